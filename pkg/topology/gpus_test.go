package topology_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// compile builds one node of the given description and compiles its GPUs.
func compile(t testing.TB, group string) (*topology.NodeGPUs, *topologyv1alpha1.NodeTopology) {
	t.Helper()
	desc, err := clusterdesc.Parse([]byte("nodes:\n- " + group))
	require.NoError(t, err)
	nodes := desc.Build(time.Now())
	require.Len(t, nodes, 1)
	nt := nodes[0].Topology
	require.NotNil(t, nt)
	gpus, err := topology.CompileNodeGPUs(topologysource.ReportOf(nt))
	require.NoError(t, err)
	return gpus, nt
}

func fitOn(t testing.TB, group string, req topology.GPURequest) (topology.Fit, *topology.Unfit) {
	gpus, nt := compile(t, group)
	return gpus.Fit(req, gpus.NewUsed(topologysource.ReportOf(nt).Allocations, nil))
}

func req(count int, opts ...func(*topology.GPURequest)) topology.GPURequest {
	r := topology.GPURequest{Count: count, Island: topology.IslandRequired, MaxNICLevel: topology.PCIeLevelPXB}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func rdma(r *topology.GPURequest)     { r.NeedRDMA = true }
func allowMIG(r *topology.GPURequest) { r.AllowMIG = true }
func island(p topology.IslandPolicy) func(*topology.GPURequest) {
	return func(r *topology.GPURequest) { r.Island = p }
}
func maxLevel(l topology.PCIeLevel) func(*topology.GPURequest) {
	return func(r *topology.GPURequest) { r.MaxNICLevel = l }
}

var weights = topology.ScoreWeights{IslandFit: 3, NICProximity: 2, NICBandwidth: 1}

func TestFit(t *testing.T) {
	const (
		hgx       = "{name: gpu-node, shape: hgx-h100}"
		hgxHalf   = "{name: gpu-node, shape: hgx-h100, allocatedGPUs: [0, 1, 2, 3]}"
		nvl       = "{name: gpu-node, shape: h100-nvl}"
		l40s      = "{name: gpu-node, shape: l40s}"
		gb200     = "{name: gpu-node, shape: gb200-tray, nvlinkDomain: rack-1}"
		sysNIC    = "{name: gpu-node, shape: hgx-h100-sys-nic}"
		broken    = "{name: gpu-node, shape: hgx-h100, gpuDirectBroken: true}"
		migHalf   = "{name: gpu-node, shape: hgx-h100, migGPUs: [0, 1, 2, 3], allocatedGPUs: [4, 5]}"
		nvlLastPr = "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [0, 1, 2, 3, 4, 5]}"
	)
	for _, tc := range []struct {
		name       string
		node       string
		req        topology.GPURequest
		wantGPUs   []int32
		oneIsland  bool
		wantReason string
		resolvable bool
	}{
		{name: "HGX takes TP=8 on its one island", node: hgx, req: req(8, rdma), wantGPUs: []int32{0, 1, 2, 3, 4, 5, 6, 7}, oneIsland: true},
		{name: "HGX half used fits TP=4 in the rest", node: hgxHalf, req: req(4, rdma), wantGPUs: []int32{4, 5, 6, 7}, oneIsland: true},
		{name: "HGX half used has no room for TP=8", node: hgxHalf, req: req(8), wantReason: "4 of 8 GPUs free, pod needs 8", resolvable: true},
		{name: "H100 NVL pairs cannot hold TP=4 on one island", node: nvl, req: req(4), wantReason: "no NVLink island has 4 free GPUs (largest: 2)", resolvable: true},
		{name: "H100 NVL spreads TP=4 when islands are only preferred", node: nvl, req: req(4, island(topology.IslandPreferred)), oneIsland: false},
		{name: "H100 NVL puts TP=2 on the pair beside a NIC", node: nvl, req: req(2, rdma), wantGPUs: []int32{0, 1}, oneIsland: true},
		{name: "H100 NVL with one pair left takes it", node: nvlLastPr, req: req(2), wantGPUs: []int32{6, 7}, oneIsland: true},
		{name: "L40S has no NVLink for TP=4", node: l40s, req: req(4), wantReason: "no NVLink island has 4 free GPUs (largest: 1)", resolvable: true},
		{name: "L40S runs TP=1 anywhere", node: l40s, req: req(1), oneIsland: true},
		{name: "L40S has no NIC at PXB for RDMA", node: l40s, req: req(1, rdma), wantReason: "only 0 free GPUs have an active NIC at PXB or nearer"},
		{name: "L40S serves RDMA from the NIC socket when NODE is allowed", node: l40s, req: req(4, rdma, maxLevel(topology.PCIeLevelNODE), island(topology.IslandIgnore)), wantGPUs: []int32{0, 1, 2, 3}},
		{name: "GB200 tray takes TP=4 with a PIX NIC per GPU", node: gb200, req: req(4, rdma), wantGPUs: []int32{0, 1, 2, 3}, oneIsland: true},
		{name: "NIC across the host bridge rules out RDMA", node: sysNIC, req: req(8, rdma), wantReason: "only 0 free GPUs have an active NIC at PXB or nearer"},
		{name: "NIC across the host bridge is fine without RDMA", node: sysNIC, req: req(8), wantGPUs: []int32{0, 1, 2, 3, 4, 5, 6, 7}, oneIsland: true},
		{name: "failed GPUDirect checks rule out RDMA", node: broken, req: req(1, rdma), wantReason: "GPUDirect RDMA check acs: Fail ACSRedirectEnabled"},
		{name: "failed GPUDirect checks do not matter without RDMA", node: broken, req: req(2), oneIsland: true},
		{name: "MIG GPUs are not given to a pod that did not ask", node: migHalf, req: req(2), wantGPUs: []int32{6, 7}, oneIsland: true},
		{name: "MIG GPUs leave too few for TP=4", node: migHalf, req: req(4), wantReason: "only 2 free GPUs are not MIG-partitioned, pod needs 4"},
		{name: "a pod that asks for MIG may use them", node: migHalf, req: req(4, allowMIG), oneIsland: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fit, unfit := fitOn(t, tc.node, tc.req)
			if tc.wantReason != "" {
				require.NotNil(t, unfit, "fit %+v", fit)
				require.True(t, strings.HasPrefix(unfit.Reason, tc.wantReason), "reason %q, want prefix %q", unfit.Reason, tc.wantReason)
				require.Equal(t, tc.resolvable, unfit.Resolvable)
				return
			}
			require.Nil(t, unfit)
			require.Len(t, fit.GPUs, tc.req.Count)
			if tc.wantGPUs != nil {
				require.ElementsMatch(t, tc.wantGPUs, fit.GPUs)
			}
			require.Equal(t, tc.oneIsland, fit.OneIsland)
			score := fit.Score(weights)
			require.True(t, score >= 0 && score <= topology.MaxScore, "score %d", score)
		})
	}
}

func TestFitPrefersTightIslandsAndNearNICs(t *testing.T) {
	score := func(node string, r topology.GPURequest) int64 {
		fit, unfit := fitOn(t, node, r)
		require.Nil(t, unfit)
		return fit.Score(weights)
	}
	// Filling the half-used HGX keeps the fresh one whole for a TP=8 pod.
	require.Greater(t, score("{name: gpu-node, shape: hgx-h100, allocatedGPUs: [0, 1, 2, 3]}", req(4)),
		score("{name: gpu-node, shape: hgx-h100}", req(4)))
	// A single-GPU pod belongs on a PCIe card, not on a whole NVSwitch board.
	require.Greater(t, score("{name: gpu-node, shape: l40s}", req(1, island(topology.IslandIgnore))),
		score("{name: gpu-node, shape: hgx-h100}", req(1)))
	// Same fill, nearer NIC: PIX beats PXB.
	require.Greater(t, score("{name: gpu-node, shape: gb200-tray, nvlinkDomain: r}", req(4)),
		score("{name: gpu-node, shape: h100-nvl, allocatedGPUs: [2, 3, 4, 5, 6, 7]}", req(2)))
	// Spanning islands scores below one island of the same size.
	require.Greater(t, score("{name: gpu-node, shape: h100-nvl}", req(2)),
		score("{name: gpu-node, shape: h100-nvl}", req(4, island(topology.IslandPreferred))))
}

func TestFitHonoursUsedGPUs(t *testing.T) {
	gpus, nt := compile(t, "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [0, 1, 2, 3]}")
	used := gpus.NewUsed(topologysource.ReportOf(nt).Allocations, nil)
	first, unfit := gpus.Fit(req(2), used)
	require.Nil(t, unfit)
	gpus.Mark(used, first.GPUs)
	second, unfit := gpus.Fit(req(2), used)
	require.Nil(t, unfit)
	require.Empty(t, intersect(first.GPUs, second.GPUs))
	gpus.Mark(used, second.GPUs)
	_, unfit = gpus.Fit(req(2), used)
	require.NotNil(t, unfit, "the last pair was given out twice")

	// Skipping the holder's report frees its GPUs again.
	used = gpus.NewUsed(topologysource.ReportOf(nt).Allocations, func(pod string) bool { return pod == clusterdesc.HolderPod("gpu-node") })
	fit, unfit := gpus.Fit(req(8, island(topology.IslandIgnore)), used)
	require.Nil(t, unfit)
	require.Len(t, fit.GPUs, 8)
}

func intersect(a, b []int32) []int32 {
	var out []int32
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
			}
		}
	}
	return out
}

func TestCompileRejectsContradictions(t *testing.T) {
	_, nt := compile(t, "{name: gpu-node, shape: hgx-h100}")
	for _, tc := range []struct {
		name   string
		mutate func(*topologyv1alpha1.NodeTopologyStatus)
		want   string
	}{
		{"duplicate GPU index", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[1].Index = 0 }, "status.gpus[1]: duplicate index 0"},
		{"path to an unknown GPU", func(s *topologyv1alpha1.NodeTopologyStatus) { s.PCIePaths[3].GPU = 42 }, "status.pciePaths[3]: gpu 42"},
		{"path to an unknown NIC", func(s *topologyv1alpha1.NodeTopologyStatus) { s.PCIePaths[0].NIC = "mlx5_99" }, `status.pciePaths[0]: nic "mlx5_99"`},
		{"unknown level", func(s *topologyv1alpha1.NodeTopologyStatus) { s.PCIePaths[0].Level = "NV12" }, "status.pciePaths[0].level"},
		{"duplicate GPU UUID", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[5].UUID = s.GPUs[2].UUID },
			`status.gpus[5]: uuid "` + nt.Status.GPUs[2].UUID + `" is also status.gpus[2]'s`},
		{"allocation of an unknown GPU", func(s *topologyv1alpha1.NodeTopologyStatus) {
			s.GPUAllocations = []topologyv1alpha1.GPUAllocation{{Pod: "ns/a", GPUs: []string{"GPU-nope"}}}
		}, `status.gpuAllocations[0]: pod ns/a holds gpu "GPU-nope", which is not in status.gpus`},
		{"one GPU allocated to two pods", func(s *topologyv1alpha1.NodeTopologyStatus) {
			s.GPUAllocations = []topologyv1alpha1.GPUAllocation{{Pod: "ns/a", GPUs: []string{s.GPUs[0].UUID}}, {Pod: "ns/b", GPUs: []string{s.GPUs[1].UUID, s.GPUs[0].UUID}}}
		}, `status.gpuAllocations[1]: gpu "` + nt.Status.GPUs[0].UUID + `" is allocated to pod ns/a and to pod ns/b`},
		{"ready with a failed check", func(s *topologyv1alpha1.NodeTopologyStatus) {
			s.GPUDirectRDMA.Ready = true
			s.GPUDirectRDMA.Checks = append(s.GPUDirectRDMA.Checks, topologyv1alpha1.GPUDirectCheck{Name: "acs", Result: topologyv1alpha1.CheckFail, Reason: "RedirectEnabled"})
		}, "status.gpuDirectRDMA.checks[" /* index varies with the shape's checks */},
		{"a GPU its own peer", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[3].NVLinkPeers = append(s.GPUs[3].NVLinkPeers, 3) },
			"status.gpus[3].nvlinkPeers: GPU 3 lists itself"},
		{"a peer that is no GPU", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[3].NVLinkPeers = []int32{42} },
			"status.gpus[3].nvlinkPeers: GPU 42 is not in status.gpus"},
		{"a peer on another island", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[7].Island = 5 },
			"nvlinkPeers: GPU 7 is in island 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := nt.Status.DeepCopy()
			tc.mutate(st)
			_, err := topology.CompileNodeGPUs(topologysource.ReportOf(&topologyv1alpha1.NodeTopology{Status: *st}))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDownNICIsNotUsed(t *testing.T) {
	_, nt := compile(t, "{name: gpu-node, shape: gb200-tray, nvlinkDomain: r}")
	nt.Status.NICs[2].State = topologyv1alpha1.PortDown
	gpus, err := topology.CompileNodeGPUs(topologysource.ReportOf(nt))
	require.NoError(t, err)
	_, unfit := gpus.Fit(req(4, rdma), gpus.NewUsed(nil, nil))
	require.NotNil(t, unfit)
	require.Contains(t, unfit.Reason, "only 3 free GPUs have an active NIC")
}

func BenchmarkCompileAndFit(b *testing.B) {
	_, nt := compile(b, "{name: gpu-node, shape: hgx-h100, allocatedGPUs: [0, 1, 2]}")
	for _, tc := range []struct {
		name    string
		compile bool
	}{{"fit", false}, {"compile+fit", true}} {
		b.Run(tc.name, func(b *testing.B) {
			gpus, _ := topology.CompileNodeGPUs(topologysource.ReportOf(nt))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if tc.compile {
					gpus, _ = topology.CompileNodeGPUs(topologysource.ReportOf(nt))
				}
				fit, unfit := gpus.Fit(req(4, rdma), gpus.NewUsed(topologysource.ReportOf(nt).Allocations, nil))
				if unfit != nil {
					b.Fatal(unfit.Reason)
				}
				_ = fit.Score(weights)
			}
		})
	}
}

// Under DRA the allocator takes the first free GPUs in its ResourceSlice's
// order, whatever the islands: the fit is those GPUs. On an H100 NVL node
// (NVLink pairs) with GPU 0 held, a TP2 claim gets GPUs 1 and 2, one from
// each of two pairs: refused under IslandRequired, a spread fit under
// Preferred; with GPUs 0 and 1 held it gets the pair 2, 3.
func TestFitInAllocationOrder(t *testing.T) {
	firstFit := func(r *topology.GPURequest) { r.FirstFit = true }
	inOrder := func(nt *topologyv1alpha1.NodeTopology, extra ...topology.DeviceID) []topology.DeviceID {
		order := append([]topology.DeviceID(nil), extra...)
		for _, g := range nt.Status.GPUs {
			order = append(order, topology.DeviceID{UUID: g.UUID})
		}
		return order
	}
	for _, tc := range []struct {
		name       string
		node       string
		policy     topology.IslandPolicy
		want       []int32
		oneIsland  bool
		islandFree int
		unfit      string
	}{
		{name: "split pair refused", node: "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [0]}", policy: topology.IslandRequired,
			unfit: "the DRA allocator takes the first free GPUs in its ResourceSlice's order, [1 2], which span 2 NVLink islands"},
		{name: "split pair spread when preferred", node: "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [0]}", policy: topology.IslandPreferred,
			want: []int32{1, 2}, islandFree: 7},
		{name: "next whole pair", node: "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [0, 1]}", policy: topology.IslandRequired,
			want: []int32{2, 3}, oneIsland: true, islandFree: 2},
		{name: "one HGX island", node: "{name: gpu-node, shape: hgx-h100, allocatedGPUs: [0, 3]}", policy: topology.IslandRequired,
			want: []int32{1, 2}, oneIsland: true, islandFree: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gpus, nt := compile(t, tc.node)
			used := gpus.NewUsed(topologysource.ReportOf(nt).Allocations, nil)
			// A device naming no GPU of the node (another node's, a
			// stale slice) is passed over, as it cannot be in this fit.
			order := inOrder(nt, topology.DeviceID{UUID: "GPU-not-on-this-node"})
			fit, unfit := gpus.FitOrdered(req(2, island(tc.policy), firstFit), used, order)
			if tc.unfit != "" {
				require.NotNil(t, unfit, "fit %+v", fit)
				require.Contains(t, unfit.Reason, tc.unfit)
				require.True(t, unfit.Resolvable, "a GPU freed ahead in the order changes the allocator's pick")
				// Without the order, or for a request the allocator does
				// not fill first-fit, tandem's own choice is a whole pair.
				free, unfit := gpus.FitOrdered(req(2, island(tc.policy)), used, order)
				require.Nil(t, unfit)
				require.True(t, free.OneIsland)
				free, unfit = gpus.FitOrdered(req(2, island(tc.policy), firstFit), used, nil)
				require.Nil(t, unfit)
				require.True(t, free.OneIsland)
				return
			}
			require.Nil(t, unfit)
			require.Equal(t, tc.want, fit.GPUs)
			require.Equal(t, tc.oneIsland, fit.OneIsland)
			require.Equal(t, tc.islandFree, fit.IslandFree)
		})
	}
	// A driver need not list GPUs by index: in reverse order, with GPU 7
	// held, the allocator takes 6 and 5, one from each of two pairs.
	t.Run("order other than the index", func(t *testing.T) {
		gpus, nt := compile(t, "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [7]}")
		used := gpus.NewUsed(topologysource.ReportOf(nt).Allocations, nil)
		order := inOrder(nt)
		slices.Reverse(order)
		_, unfit := gpus.FitOrdered(req(2, firstFit), used, order)
		require.NotNil(t, unfit)
		require.Contains(t, unfit.Reason, "order, [6 5], which span 2 NVLink islands")
		gpus2, nt2 := compile(t, "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [6, 7]}")
		order = inOrder(nt2)
		slices.Reverse(order)
		fit, unfit := gpus2.FitOrdered(req(2, firstFit), gpus2.NewUsed(topologysource.ReportOf(nt2).Allocations, nil), order)
		require.Nil(t, unfit)
		require.Equal(t, []int32{5, 4}, fit.GPUs)
		require.True(t, fit.OneIsland)
	})
	// RDMA: on H100 NVL each NIC sits at PXB from the first pair of its
	// socket and at NODE from the second. With GPUs 0 and 1 held the
	// allocator takes 2 and 3, a whole pair but with no NIC at PXB; tandem's
	// own choice would be the pair 4, 5.
	t.Run("RDMA with the picked GPUs far from a NIC", func(t *testing.T) {
		gpus, nt := compile(t, "{name: gpu-node, shape: h100-nvl, allocatedGPUs: [0, 1]}")
		used := gpus.NewUsed(topologysource.ReportOf(nt).Allocations, nil)
		_, unfit := gpus.FitOrdered(req(2, firstFit, rdma), used, inOrder(nt))
		require.NotNil(t, unfit)
		require.Contains(t, unfit.Reason, "order, [2 3], and GPU 2 has no NIC at PXB or nearer ready for GPUDirect RDMA")
		own, unfit := gpus.FitOrdered(req(2, rdma), used, inOrder(nt))
		require.Nil(t, unfit)
		require.ElementsMatch(t, []int32{4, 5}, own.GPUs)
	})
	t.Run("too few free in the order", func(t *testing.T) {
		gpus, nt := compile(t, "{name: gpu-node, shape: hgx-h100, allocatedGPUs: [0, 1, 2, 3, 4, 5, 6]}")
		used := gpus.NewUsed(topologysource.ReportOf(nt).Allocations, nil)
		_, unfit := gpus.FitOrdered(req(2, firstFit), used, inOrder(nt))
		require.NotNil(t, unfit)
		require.Contains(t, unfit.Reason, "1 of 8 GPUs free, pod needs 2")
	})
}
