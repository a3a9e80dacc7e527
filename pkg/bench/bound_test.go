package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/topology"
)

func replica(name string, p, pg, d, dg int) Instance {
	return Instance{Name: name, Unit: Unit{Name: name, Count: 1, Mode: ModeReplica, Prefill: Engine{p, pg}, Decode: Engine{d, dg}}}
}

func TestBoundHandComputed(t *testing.T) {
	// a-0 and a-1 share leaf l1; b is on l2 of the same spine; c, on the
	// other spine, is held whole. Free GPUs at the start: a-0 4, a-1 4, b 6, c 0.
	c, err := clusterdesc.Parse([]byte(`
nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3]}
- {name: b, shape: hgx-h100, zone: z1, spine: s1, leaf: l2, allocatedGPUs: [0, 1]}
- {name: c, shape: hgx-h100, zone: z1, spine: s2, leaf: l3, allocatedGPUs: [0, 1, 2, 3, 4, 5, 6, 7]}
`))
	require.NoError(t, err)
	nodes := NodesOf(c.Build(time.Now()))
	a := analyzer(2)
	price := func(c topology.PathClass) time.Duration { return a.Model.TransferTime(a.KVBytes, c) }

	instances := []Instance{
		replica("pair4", 1, 4, 1, 4), // 8 on one node: none; two nodes with 4 on one leaf: a-0 and a-1
		replica("mixed", 1, 2, 2, 4), // 2+4 on one node: b
		replica("wide", 1, 6, 1, 4),  // 6 only on b, 4 on an a: across leaves
		replica("huge", 1, 8, 1, 8),  // no node has 8 free
		replica("small", 2, 2, 3, 2), // 2+2 on any node
	}
	b := a.Bound(nodes, instances)
	require.Equal(t, PairBound{Class: "leaf", Transfer: price("leaf"), Feasible: true}, b.Instances["pair4"])
	require.Equal(t, PairBound{Class: "nvlink-domain", Transfer: price("nvlink-domain"), Feasible: true}, b.Instances["mixed"])
	require.Equal(t, PairBound{Class: "spine", Transfer: price("spine"), Feasible: true}, b.Instances["wide"])
	require.False(t, b.Instances["huge"].Feasible)
	require.Equal(t, topology.PathClass("nvlink-domain"), b.Instances["small"].Class)

	// Every prefill→decode pair of a replica unit counts: 1 + 2 + 1 + 2×3
	// feasible pairs, and huge's one pair infeasible.
	require.Equal(t, 10, b.Pairs)
	require.Equal(t, 1, b.Infeasible)
	require.Equal(t, (price("leaf")+2*price("nvlink-domain")+price("spine")+6*price("nvlink-domain"))/10, b.Mean)
	require.InDelta(t, 8.0/10, b.NVLinkShare, 1e-9)

	// Over a placement's paired decodes only: here one of pair4 (paired
	// across the spine) and one of small; an unpaired decode does not count.
	q := Quality{Pairs: []Pair{
		{Decode: "pair4-decode-0", Instance: "pair4", Class: "spine", Transfer: price("spine")},
		{Decode: "small-decode-0", Instance: "small", Class: "nvlink-domain", Transfer: price("nvlink-domain")},
		{Decode: "small-decode-1", Instance: "small", Class: PathClassUnpaired, Transfer: -1},
	}}
	over := b.Over(a, q)
	require.Equal(t, 2, over.Pairs)
	require.Equal(t, (price("leaf")+price("nvlink-domain"))/2, over.Mean)
	require.InDelta(t, 0.5, over.NVLinkShare, 1e-9)
}

func TestBoundGPUDirect(t *testing.T) {
	// Two boards on one leaf, one with GPUDirect broken: a pair across them
	// bounces through host memory, one on a board stays on NVLink.
	c, err := clusterdesc.Parse([]byte(`
nodes:
- {name: ok, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: broken, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, gpuDirectBroken: true}
`))
	require.NoError(t, err)
	nodes := NodesOf(c.Build(time.Now()))
	a := analyzer(8)
	b := a.Bound(nodes, []Instance{replica("tp8", 1, 8, 1, 8), replica("tp4", 1, 4, 1, 4)})
	require.Equal(t, topology.PathHostBounce, b.Instances["tp8"].Class)
	require.Equal(t, topology.PathClass("nvlink-domain"), b.Instances["tp4"].Class)
}

func TestBoundMatchesExactOptimum(t *testing.T) {
	// The TestOptimumTiny cluster: where no two instances compete for the
	// same node pair, the relaxation loses nothing and the bound is the
	// optimum.
	c, err := clusterdesc.Parse([]byte(`
nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: t, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l2, nvlinkDomain: rack}
`))
	require.NoError(t, err)
	nodes := NodesOf(c.Build(time.Now()))
	a := analyzer(4)
	for _, tt := range []struct {
		name      string
		instances []Instance
	}{
		{"three 1P1D TP4", []Instance{replica("s0", 1, 4, 1, 4), replica("s1", 1, 4, 1, 4), replica("s2", 1, 4, 1, 4)}},
		{"1P1D TP8", []Instance{replica("b", 1, 8, 1, 8)}},
		{"2P1D TP2/TP4", []Instance{replica("m", 2, 2, 1, 4)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opt, err := a.Optimum(nodes, tt.instances, 0)
			require.NoError(t, err)
			require.True(t, opt.Proven)
			require.Zero(t, opt.Unplaced)
			b := a.Bound(nodes, tt.instances)
			require.Equal(t, opt.Mean, b.Mean)
			require.Equal(t, opt.Pairs, b.Pairs)
		})
	}
	// With contention the bound stays below: 1P2D TP4 has room for one
	// decode beside its prefill on a board, not two; the bound ignores that.
	contended := []Instance{replica("m", 1, 4, 2, 4)}
	opt, err := a.Optimum(nodes, contended, 0)
	require.NoError(t, err)
	require.Zero(t, opt.Unplaced)
	nv, leaf := a.Model.TransferTime(a.KVBytes, "nvlink-domain"), a.Model.TransferTime(a.KVBytes, "leaf")
	require.Equal(t, (nv+leaf)/2, opt.Mean)
	require.Equal(t, nv, a.Bound(nodes, contended).Mean)
}

func TestNVLinkShare(t *testing.T) {
	a := analyzer(4)
	q := Quality{Classes: map[topology.PathClass]int{"nvlink-domain": 3, "leaf": 1, PathClassUnpaired: 4}}
	require.InDelta(t, 0.75, a.NVLinkShare(q), 1e-9)
	require.True(t, a.IsNVLink("nvlink-domain"))
	require.False(t, a.IsNVLink("leaf"))
	require.False(t, a.IsNVLink(topology.PathHostBounce))
	require.Zero(t, a.NVLinkShare(Quality{}))
}
