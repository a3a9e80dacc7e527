package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
)

func generated(t *testing.T, nodes int) []clusterdesc.Node {
	t.Helper()
	c, err := GenerateCluster(nodes)
	require.NoError(t, err)
	return c.Build(time.Now())
}

func TestHoldGPUs(t *testing.T) {
	nodes := generated(t, 100) // 592 GPUs
	held, err := HoldGPUs(nodes, 0.3, 1)
	require.NoError(t, err)
	require.Equal(t, 178, held) // round(0.3 × 592)
	require.Equal(t, 178, HeldGPUs(NodesOf(nodes)))

	counted, holders, touched := 0, 0, 0
	for _, n := range nodes {
		if len(n.Holders) > 0 {
			touched++
		}
		islandOf := map[int32]int{}
		for i, island := range n.Islands() {
			for _, g := range island {
				islandOf[g] = i
			}
		}
		require.Len(t, n.Topology.Status.GPUAllocations, len(n.Holders), n.Node.Name)
		for i, h := range n.Holders {
			holders++
			counted += len(h.GPUs)
			require.Contains(t, []int{1, 2, 4}, len(h.GPUs), "holder %s", h.Name)
			// 1, 2 or 4 GPUs always fit one island of an HGX board or a tray
			// with that many free, so the device plugin keeps them together.
			for _, g := range h.GPUs {
				require.Equal(t, islandOf[h.GPUs[0]], islandOf[g], "holder %s spans islands", h.Name)
			}
			alloc := n.Topology.Status.GPUAllocations[i]
			require.Equal(t, clusterdesc.HolderNamespace+"/"+h.Name, alloc.Pod)
			require.Len(t, alloc.GPUs, len(h.GPUs))
			for _, uuid := range alloc.GPUs {
				require.True(t, strings.HasPrefix(uuid, "GPU-"), uuid)
			}
		}
		require.LessOrEqual(t, len(n.Held()), n.GPUCount(), n.Node.Name)
	}
	require.Equal(t, 178, counted)
	require.Greater(t, touched, 20, "holders are scattered, not packed onto a few nodes")
	require.Len(t, clusterdesc.HolderPods(nodes), holders)

	again := generated(t, 100)
	_, err = HoldGPUs(again, 0.3, 1)
	require.NoError(t, err)
	require.Equal(t, holdersOf(nodes), holdersOf(again), "the same seed holds the same GPUs")
	other := generated(t, 100)
	_, err = HoldGPUs(other, 0.3, 2)
	require.NoError(t, err)
	require.NotEqual(t, holdersOf(nodes), holdersOf(other))
}

func holdersOf(nodes []clusterdesc.Node) []string {
	var out []string
	for _, n := range nodes {
		for _, h := range n.Holders {
			out = append(out, fmt.Sprintf("%s:%v", h.Name, h.GPUs))
		}
	}
	return out
}

func TestHoldGPUsFillsNodesCompletely(t *testing.T) {
	c, err := clusterdesc.Parse([]byte(`
nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1]}
- {name: cpu, shape: cpu, zone: z1}
`))
	require.NoError(t, err)
	nodes := c.Build(time.Now())
	// 16 GPUs, 4 held by allocatedGPUs: 0.75 asks for the other 12.
	held, err := HoldGPUs(nodes, 0.75, 7)
	require.NoError(t, err)
	require.Equal(t, 12, held)
	for _, n := range NodesOf(nodes) {
		require.Zero(t, n.FreeGPUs(), n.Name)
	}
	_, err = HoldGPUs(c.Build(time.Now()), 0.9, 7)
	require.ErrorContains(t, err, "14 of the cluster's 16 GPUs asked, but only 12 are free")
	_, err = HoldGPUs(c.Build(time.Now()), 1, 7)
	require.ErrorContains(t, err, "below 1")
}

func TestPickGPUs(t *testing.T) {
	pairs := [][]int32{{0, 1}, {2, 3}, {4, 5}, {6, 7}} // H100 NVL: NVLink pairs
	held := map[int32]bool{0: true}
	require.Equal(t, []int32{1}, pickGPUs(pairs, held, 1), "the tightest island with room")
	require.Equal(t, []int32{2, 3}, pickGPUs(pairs, held, 2), "a whole pair, not GPU 1 and another")
	require.Equal(t, []int32{1, 2, 3, 4}, pickGPUs(pairs, held, 4), "no island holds 4: the fullest islands first")
	board := [][]int32{{0, 1, 2, 3, 4, 5, 6, 7}}
	require.Equal(t, []int32{1, 2}, pickGPUs(board, held, 2))
}

func TestNodesOfCountsHeldPerIsland(t *testing.T) {
	c, err := clusterdesc.Parse([]byte(`
nodes:
- {name: nvl, shape: h100-nvl, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [1, 2, 3]}
- {name: gone, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, topology: missing}
`))
	require.NoError(t, err)
	built := c.Build(time.Now())
	require.NoError(t, built[1].Hold("job", []int32{5, 6}))
	nodes := NodesOf(built)
	require.Equal(t, []int{1, 2, 0, 0}, nodes[0].Held)
	require.Equal(t, []int{1, 0, 2, 2}, nodes[0].FreeIslands())
	require.Equal(t, []int{2}, nodes[1].Held, "no NodeTopology: one island of all GPUs")
	require.Equal(t, 6, nodes[1].FreeGPUs())
	// Held GPUs are neither free nor stranded.
	free, stranded := Stranded(nodes[0], nil, 2)
	require.Equal(t, 5, free)
	require.Equal(t, 1, stranded)
}
