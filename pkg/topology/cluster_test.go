package topology_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// A node without a leaf label, such as one whose NICs sit on several rail
// leaves (the agent publishes no leaf for it), joins no leaf domain, and its
// pairs are classed at the finest coarser level both ends share.
func TestNodesWithoutLeafPairAtTheirSpine(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: rail, count: 2, shape: hgx-h100, zone: z1, spine: s1}
- {name: leafy, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: far, shape: hgx-h100, zone: z1, spine: s2}
`)
	leaf, ok := v.Levels().Index(topology.LevelLeaf)
	require.True(t, ok)
	spine, ok := v.Levels().Index(topology.LevelSpine)
	require.True(t, ok)

	for _, tc := range []struct {
		a, b string
		want topology.PathClass
	}{
		// Both lack a leaf: an empty value is never a shared domain.
		{"rail-0", "rail-1", topology.LevelSpine},
		{"rail-0", "leafy", topology.LevelSpine},
		{"leafy", "rail-1", topology.LevelSpine},
		{"rail-0", "far", topology.LevelZone},
		{"rail-0", "rail-0", topology.LevelNVLinkDomain},
	} {
		require.Equal(t, tc.want, v.Classify(tc.a, tc.b), "%s - %s", tc.a, tc.b)
	}

	p, ok := v.Place("rail-0")
	require.True(t, ok)
	require.Equal(t, "", p.IDs[leaf])
	require.Equal(t, "z1/s1", p.IDs[spine])
	_, _, ok = v.DomainFree(leaf, "rail-0")
	require.False(t, ok, "a node without a leaf is in no leaf domain")
	_, _, ok = v.FreeOf(leaf, "z1/s1/")
	require.False(t, ok, "nodes without a leaf form no leaf domain of their own")
	require.Nil(t, v.NodesNear(leaf, "rail-0", 1, 10, nil))
	free, _, ok := v.DomainFree(spine, "rail-0")
	require.True(t, ok)
	require.Equal(t, 24, free, "the spine counts the leafless nodes' GPUs")
	near := v.NodesNear(spine, "rail-0", 8, 10, func(n string) bool { return n == "rail-0" })
	require.ElementsMatch(t, []string{"rail-1", "leafy"}, near)

	// A unit that needs two boards is planned within the spine.
	spec := unit(unitPod("p", true, 8), unitPod("d", false, 8))
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Equal(t, topology.LevelSpine, v.Levels()[plan.Level].Name)
	require.Equal(t, map[topology.PathClass]int{topology.LevelSpine: 1}, classes(v, spec, plan))
}

// The ledger's GPU count follows reservations and releases: it is what the
// scheduler's ledger gauge reports.
func TestLedgerGPUsFollowReservations(t *testing.T) {
	c, _ := clusterOf(t, `nodes:
- {name: gpu, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	require.Equal(t, 0, c.LedgerGPUs())
	_, unfit, reason := c.Reserve("a", "ns/a", "gpu-0", req(4), topology.Usable)
	require.Empty(t, reason)
	require.Nil(t, unfit)
	_, unfit, reason = c.Reserve("b", "ns/b", "gpu-1", req(2), topology.Usable)
	require.Empty(t, reason)
	require.Nil(t, unfit)
	require.Equal(t, 6, c.LedgerGPUs())
	require.Equal(t, 2, c.LedgerSize())
	c.Release("a")
	require.Equal(t, 2, c.LedgerGPUs())
	c.Release("b")
	require.Equal(t, 0, c.LedgerGPUs())
}
