package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/topology"
)

func TestParseWorkload(t *testing.T) {
	w, err := ParseWorkload([]byte(`
units:
- {name: chat, count: 2, prefill: {replicas: 1, gpus: 4}, decode: {replicas: 2, gpus: 2}}
- {name: pool, mode: pool, prefill: {replicas: 3, gpus: 8}, decode: {replicas: 3, gpus: 8}}
`))
	require.NoError(t, err)
	require.Equal(t, ModelLlama3_70B_BF16, w.Model)
	require.Equal(t, 4096, w.PromptTokens)
	require.Equal(t, int64(327680), w.BytesPerToken())
	require.Equal(t, ModeReplica, w.Units[0].Mode)
	require.Equal(t, 1, w.Units[1].Count)
	require.Equal(t, 2*8+48, w.GPUs())
	require.Equal(t, 2, w.SmallestEngine())
	in := w.Instances()
	require.Len(t, in, 3)
	require.Equal(t, "chat-1", in[1].Name)
	pods := in[0].Pods()
	require.Equal(t, []string{"chat-0-prefill-0", "chat-0-decode-0", "chat-0-decode-1"}, []string{pods[0].Name, pods[1].Name, pods[2].Name})

	scaled := w.Scaled(640)
	require.Equal(t, w.Units[0].Count, 2, "Scaled leaves the original alone")
	require.Equal(t, scaled, w, "no fill, no scaling")
	w.Fill = 0.5
	scaled = w.Scaled(640) // 320 GPUs for a 64-GPU mix: five times the counts
	require.Equal(t, 10, scaled.Units[0].Count)
	require.Equal(t, 5, scaled.Units[1].Count)
}

func TestParseWorkloadRejects(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"no units", `promptTokens: 10`, []string{"units: Required value"}},
		{"unknown field", `units: [{name: a, prefil: {replicas: 1, gpus: 1}}]`, []string{`unknown field "prefil"`}},
		{"bad mode", `units: [{name: a, mode: gang, prefill: {replicas: 1, gpus: 1}, decode: {replicas: 1, gpus: 1}}]`, []string{`units[0].mode: Unsupported value: "gang"`}},
		{"zero gpus", `units: [{name: a, prefill: {replicas: 1}, decode: {replicas: 1, gpus: 1}}]`, []string{"units[0].prefill.gpus: Invalid value: 0"}},
		{"zero replicas", `units: [{name: a, prefill: {replicas: 1, gpus: 1}, decode: {gpus: 1}}]`, []string{"units[0].decode.replicas: Invalid value: 0"}},
		{"bad name", `units: [{name: A_b, prefill: {replicas: 1, gpus: 1}, decode: {replicas: 1, gpus: 1}}]`, []string{`units[0].name: Invalid value: "A_b"`}},
		{"duplicate", `units: [{name: a, prefill: {replicas: 1, gpus: 1}, decode: {replicas: 1, gpus: 1}}, {name: a, prefill: {replicas: 1, gpus: 1}, decode: {replicas: 1, gpus: 1}}]`, []string{`units[1].name: Duplicate value: "a"`}},
		{"model", `{model: gpt-5, units: [{name: a, prefill: {replicas: 1, gpus: 1}, decode: {replicas: 1, gpus: 1}}]}`, []string{`model: Unsupported value: "gpt-5"`}},
		{"fill", `{fill: 1.5, units: [{name: a, prefill: {replicas: 1, gpus: 1}, decode: {replicas: 1, gpus: 1}}]}`, []string{"fill: Invalid value: 1.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWorkload([]byte(tt.yaml))
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob("../../docs/examples/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		if strings.Contains(filepath.Base(f), "workload") {
			_, err = ParseWorkload(data)
		} else {
			_, err = clusterdesc.Parse(data)
		}
		require.NoError(t, err, f)
	}
}

func TestHistogramQuantile(t *testing.T) {
	// 10 observations in (0, 1], 80 in (1, 2], 10 in (2, 4].
	h := Histogram{Buckets: []Bucket{{1, 10}, {2, 90}, {4, 100}}, Count: 100}
	require.InDelta(t, 0.5, h.Quantile(0.05), 1e-9)
	require.InDelta(t, 1.5, h.Quantile(0.5), 1e-9)
	require.InDelta(t, 3.8, h.Quantile(0.99), 1e-9)
	require.InDelta(t, 4, h.Quantile(1), 1e-9)
	// Beyond the last finite bucket: its bound.
	over := Histogram{Buckets: []Bucket{{1, 1}, {2, 1}}, Count: 3}
	require.InDelta(t, 2, over.Quantile(0.9), 1e-9)
	require.True(t, math.IsNaN(Histogram{Buckets: []Bucket{{1, 0}}}.Quantile(0.5)))

	before := Histogram{Buckets: []Bucket{{1, 5}, {2, 5}, {4, 5}}, Count: 5, Sum: 2}
	after := Histogram{Buckets: []Bucket{{1, 5}, {2, 15}, {4, 25}}, Count: 25, Sum: 40}
	d, err := after.Sub(before)
	require.NoError(t, err)
	require.Equal(t, []Bucket{{1, 0}, {2, 10}, {4, 20}}, d.Buckets)
	require.Equal(t, uint64(20), d.Count)
	require.InDelta(t, 2.0, d.Quantile(0.5), 1e-9)
	_, err = before.Sub(after)
	require.ErrorContains(t, err, "reset")
	sum, err := d.Add(before)
	require.NoError(t, err)
	require.Equal(t, uint64(25), sum.Count)
	require.Equal(t, 5*time.Second/10, Histogram{Buckets: []Bucket{{1, 2}}, Count: 2}.QuantileDuration(0.5))
}

const tinyCluster = `
nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: b, shape: hgx-h100, zone: z1, spine: s1, leaf: l2}
- {name: c, shape: hgx-h100, zone: z1, spine: s2, leaf: l3, gpuDirectBroken: true}
- {name: t, count: 2, shape: gb200-tray, zone: z1, spine: s2, leaf: l4, nvlinkDomain: rack}
- {name: x, shape: hgx-h100, zone: z2, spine: s9, leaf: l9}
- {name: pcie, shape: l40s, zone: z1, spine: s1, leaf: l1}
`

func tinyNodes(t *testing.T) []Node {
	c, err := clusterdesc.Parse([]byte(tinyCluster))
	require.NoError(t, err)
	return NodesOf(c.Build(time.Now()))
}

func analyzer(smallest int) Analyzer {
	return Analyzer{Model: topology.DefaultCostModel(), KVBytes: topology.Llama3_70B_BF16().KVBytes(4096), SmallestEngine: smallest}
}

func TestAnalyzePairs(t *testing.T) {
	a := analyzer(4)
	nodes := tinyNodes(t)
	pods := []Pod{
		// A pool: each decode from its nearest prefill.
		{Name: "u-p0", Instance: "u", Role: RolePrefill, GPUs: 4, Node: "a-0", Pool: true},
		{Name: "u-p1", Instance: "u", Role: RolePrefill, GPUs: 4, Node: "t-0", Pool: true},
		{Name: "u-d0", Instance: "u", Role: RoleDecode, GPUs: 4, Node: "a-0", Pool: true}, // nvlink via a-0
		{Name: "u-d1", Instance: "u", Role: RoleDecode, GPUs: 4, Node: "t-1", Pool: true}, // nvlink via rack
		{Name: "u-d2", Instance: "u", Role: RoleDecode, GPUs: 4, Node: "a-1", Pool: true}, // leaf
		{Name: "u-d3", Instance: "u", Role: RoleDecode, GPUs: 4, Node: "b", Pool: true},   // spine
		{Name: "v-p0", Instance: "v", Role: RolePrefill, GPUs: 4, Node: "b"},
		{Name: "v-d0", Instance: "v", Role: RoleDecode, GPUs: 4, Node: "c"}, // GPUDirect broken
		{Name: "v-d1", Instance: "v", Role: RoleDecode, GPUs: 4, Node: "x"}, // other zone
		{Name: "w-d0", Instance: "w", Role: RoleDecode, GPUs: 4, Node: "x"}, // no prefill bound
		{Name: "w-p0", Instance: "w", Role: RolePrefill, GPUs: 4},
		// A replica unit: its decode pairs with both prefills.
		{Name: "r-p0", Instance: "r", Role: RolePrefill, GPUs: 2, Node: "a-1"},
		{Name: "r-p1", Instance: "r", Role: RolePrefill, GPUs: 2, Node: "b"},
		{Name: "r-d0", Instance: "r", Role: RoleDecode, GPUs: 4, Node: "a-1"}, // nvlink from r-p0, spine from r-p1
	}
	q := a.Analyze(nodes, pods)
	require.Equal(t, 1, q.Pending)
	require.Equal(t, 13, q.Bound)
	want := map[topology.PathClass]int{"nvlink-domain": 3, "leaf": 1, "spine": 2, "host-bounce": 1, "none": 1, PathClassUnpaired: 1}
	require.Equal(t, want, q.Classes)
	require.InDelta(t, 3.0/8, q.Share("nvlink-domain"), 1e-9)
	kv := a.KVBytes
	m := a.Model
	times := []time.Duration{m.TransferTime(kv, "nvlink-domain"), m.TransferTime(kv, "nvlink-domain"), m.TransferTime(kv, "leaf"),
		m.TransferTime(kv, "spine"), m.TransferTime(kv, topology.PathHostBounce), m.TransferTime(kv, topology.PathNone),
		m.TransferTime(kv, "nvlink-domain"), m.TransferTime(kv, "spine")}
	var total time.Duration
	for _, d := range times {
		total += d
	}
	require.Equal(t, total/8, q.MeanTransfer)
	require.Equal(t, m.TransferTime(kv, topology.PathNone), q.P99Transfer)
	require.Equal(t, "u-p0", q.Pairs[0].Prefill)
	require.Equal(t, "u-p1", q.Pairs[1].Prefill)
}

func TestStranded(t *testing.T) {
	hgx := Node{Name: "h", GPUs: 8, Islands: []int{8}}
	tests := []struct {
		name         string
		node         Node
		used         []int
		smallest     int
		free, strand int
	}{
		{"empty node, TP4", hgx, nil, 4, 8, 0},
		{"6 free, TP4", hgx, []int{2}, 4, 6, 2},
		{"3 free, TP4", hgx, []int{4, 1}, 4, 3, 3},
		{"3 free, TP1", hgx, []int{4, 1}, 1, 3, 0},
		{"full", hgx, []int{8}, 4, 0, 0},
		{"pairs of NVLink, TP4", Node{GPUs: 8, Islands: []int{2, 2, 2, 2}}, nil, 4, 8, 8},
		{"pairs, one pod per pair, TP2", Node{GPUs: 8, Islands: []int{2, 2, 2, 2}}, []int{1, 1}, 2, 6, 0},
		{"no islands known", Node{GPUs: 4}, []int{1}, 2, 3, 1},
		{"pod larger than an island", Node{GPUs: 8, Islands: []int{2, 2, 2, 2}}, []int{3}, 2, 5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			free, stranded := Stranded(tt.node, tt.used, tt.smallest)
			require.Equal(t, tt.free, free)
			require.Equal(t, tt.strand, stranded)
		})
	}
}

func TestOptimumTiny(t *testing.T) {
	// Two HGX nodes under one leaf, a two-tray NVL72 slice under another.
	c, err := clusterdesc.Parse([]byte(`
nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: t, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l2, nvlinkDomain: rack}
`))
	require.NoError(t, err)
	nodes := NodesOf(c.Build(time.Now()))
	a := analyzer(4)
	nv := a.Model.TransferTime(a.KVBytes, "nvlink-domain")
	leaf := a.Model.TransferTime(a.KVBytes, "leaf")
	unit := func(name string, count, p, pg, d, dg int) Unit {
		return Unit{Name: name, Count: count, Mode: ModeReplica, Prefill: Engine{p, pg}, Decode: Engine{d, dg}}
	}
	pool := func(name string, count, p, pg, d, dg int) Unit {
		u := unit(name, count, p, pg, d, dg)
		u.Mode = ModePool
		return u
	}
	tests := []struct {
		name     string
		units    []Unit
		unplaced int
		total    time.Duration
	}{
		// Three 1P1D TP4 units fit on two HGX boards and the rack: all NVLink.
		{"three small units", []Unit{unit("s", 3, 1, 4, 1, 4)}, 0, 3 * nv},
		// A 1P1D of TP8 engines cannot share a board: the two boards, one leaf.
		{"TP8 pair", []Unit{unit("b", 1, 1, 8, 1, 8)}, 0, leaf},
		// 32 GPUs asked of 24: the TP8 pair takes both boards (it fits
		// nowhere else) and one TP4 unit the rack. Leaving out the TP8 pair
		// instead would be cheaper per transfer but strand 16 GPUs of demand.
		{"big and small", []Unit{unit("s", 2, 1, 4, 1, 4), unit("b", 1, 1, 8, 1, 8)}, 1, leaf + nv},
		// 2P2D TP4: 16 GPUs, more than one NVLink domain holds. A prefill
		// and a decode on each board: of the four pairs, two share a board
		// and two cross the leaf (the rack would cross the spine).
		{"2P2D", []Unit{unit("m", 1, 2, 4, 2, 4)}, 0, 2*nv + 2*leaf},
		// The same as a pool: each decode from the prefill on its board.
		{"2P2D pool", []Unit{pool("m", 1, 2, 4, 2, 4)}, 0, 2 * nv},
		// 2P1D TP2/TP4 fits one board: both of its pairs on NVLink.
		{"2P1D on one board", []Unit{unit("m", 1, 2, 2, 1, 4)}, 0, 2 * nv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Workload{Units: tt.units}
			w.Default()
			opt, err := a.Optimum(nodes, w.Instances(), 0)
			require.NoError(t, err)
			require.True(t, opt.Proven)
			require.Equal(t, tt.unplaced, opt.Unplaced)
			require.Equal(t, tt.total, opt.Total)
			// The reported placement prices to the reported total.
			var sum time.Duration
			for _, p := range a.Analyze(nodes, opt.Pods).Pairs {
				sum += p.Transfer
			}
			require.Equal(t, tt.total, sum)
		})
	}
	_, err = a.Optimum(make([]Node, 17), nil, 0)
	require.NoError(t, err, "nodes without GPUs do not count against the limit")
	big := make([]Node, 17)
	for i := range big {
		big[i] = Node{Name: fmt.Sprint(i), GPUs: 8}
	}
	_, err = a.Optimum(big, nil, 0)
	require.ErrorContains(t, err, "beyond the exact search")
}

func TestGenerateCluster(t *testing.T) {
	for _, n := range []int{1, 15, 100, 5000} {
		c, err := GenerateCluster(n)
		require.NoError(t, err)
		nodes := c.Build(time.Now())
		require.Len(t, nodes, n)
	}
	c, err := GenerateCluster(100)
	require.NoError(t, err)
	spines, racks := map[string]bool{}, 0
	for _, g := range c.Nodes {
		spines[g.Spine] = true
		if g.Shape == "gb200-tray" {
			racks++
		}
	}
	require.Len(t, spines, 2)
	require.Equal(t, 3, racks) // 16 + 18 + 16 + 18 + 16 + 16 (cut short)
}

func TestExampleWorkloadsMixSizesAndModes(t *testing.T) {
	read := func(name string) *Workload {
		data, err := os.ReadFile(filepath.Join("../../docs/examples", name))
		require.NoError(t, err)
		w, err := ParseWorkload(data)
		require.NoError(t, err, name)
		return w
	}
	mixed := read("workload-mixed.yaml")
	differs, tp8 := false, false
	for _, u := range mixed.Units {
		require.Equal(t, ModeReplica, u.Mode, u.Name)
		differs = differs || u.Prefill.GPUs != u.Decode.GPUs
		tp8 = tp8 || u.Prefill.GPUs == 8
	}
	require.True(t, differs, "some unit's roles use different tensor-parallel sizes")
	require.True(t, tp8)
	require.Equal(t, 2, mixed.SmallestEngine())
	// fill 0.7 of 414 free GPUs (592 less 178 held): about 290 asked.
	scaled := mixed.Scaled(414)
	require.InDelta(t, 0.7*414, scaled.GPUs(), 0.15*414)
	for _, u := range scaled.Units {
		require.GreaterOrEqual(t, u.Count, 1)
	}

	for _, u := range read("workload-pool.yaml").Units {
		require.Equal(t, ModePool, u.Mode, u.Name)
	}
	modes := map[Mode]bool{}
	for _, u := range read("workload-replica-and-pool.yaml").Units {
		modes[u.Mode] = true
	}
	require.Equal(t, map[Mode]bool{ModeReplica: true, ModePool: true}, modes)
}

// The optimum's placement fits: no island gets more GPUs than it had free,
// and its total is what the placement costs, on partly used clusters where
// the search backtracks across instances.
func TestOptimumPlacementFits(t *testing.T) {
	wl := &Workload{Units: []Unit{
		{Name: "chat", Count: 1, Mode: ModeReplica, Prefill: Engine{1, 2}, Decode: Engine{1, 4}},
		{Name: "summarize", Count: 1, Mode: ModeReplica, Prefill: Engine{2, 2}, Decode: Engine{1, 4}},
		{Name: "code", Count: 1, Mode: ModeReplica, Prefill: Engine{1, 8}, Decode: Engine{1, 8}},
		{Name: "assist", Count: 1, Mode: ModePool, Prefill: Engine{4, 2}, Decode: Engine{8, 2}},
	}}
	wl.Default()
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			desc, err := GenerateCluster(16)
			require.NoError(t, err)
			built := desc.Build(time.Now())
			_, err = HoldGPUs(built, 0.6, seed)
			require.NoError(t, err)
			nodes := NodesOf(built)
			a := analyzer(2)
			opt, err := a.Optimum(nodes, wl.Instances(), 300_000)
			require.NoError(t, err)
			used := map[string][]int{}
			for _, p := range opt.Pods {
				if p.Node != "" {
					used[p.Node] = append(used[p.Node], p.GPUs)
				}
			}
			for _, n := range nodes {
				free := n.FreeIslands()
				for _, g := range used[n.Name] {
					i := tightest(free, g)
					require.GreaterOrEqual(t, i, 0, "node %s: pods of %v GPUs on islands with %v free", n.Name, used[n.Name], n.FreeIslands())
					free[i] -= g
				}
			}
			var sum time.Duration
			for _, p := range a.Analyze(nodes, opt.Pods).Pairs {
				sum += p.Transfer
			}
			require.InDelta(t, float64(opt.Total), float64(sum), 1, "the reported total is the placement's")
		})
	}
}
