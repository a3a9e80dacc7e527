package topology_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// farHalfNotReady makes an HGX report what an agent on a two-socket node
// whose GPUs 4-7 are far from every NIC publishes: the node not ready
// (pcie-path failed), GPUs 0-3 ready one by one, 4-7 blocked.
func farHalfNotReady(st *topologyv1alpha1.NodeTopologyStatus) {
	st.GPUDirectRDMA.Ready = false
	st.GPUDirectRDMA.Checks = []topologyv1alpha1.GPUDirectCheck{
		{Name: "devices", Result: topologyv1alpha1.CheckPass},
		{Name: "pcie-path", Result: topologyv1alpha1.CheckFail, Reason: "NICAcrossHostBridge"},
	}
	st.GPUDirectRDMA.GPUs = nil
	for _, g := range st.GPUs {
		r := topologyv1alpha1.GPUDirectGPU{GPU: g.Index, Ready: g.Index < 4, NICs: []string{"mlx5_0"}}
		if !r.Ready {
			r.BlockingChecks = []string{"pcie-path"}
		}
		st.GPUDirectRDMA.GPUs = append(st.GPUDirectRDMA.GPUs, r)
	}
}

func compileStatus(t *testing.T, st *topologyv1alpha1.NodeTopologyStatus) *topology.NodeGPUs {
	t.Helper()
	gpus, err := topology.CompileNodeGPUs(topologysource.ReportOf(&topologyv1alpha1.NodeTopology{Status: *st}))
	require.NoError(t, err)
	return gpus
}

// An RDMA pod takes only GPUs the agent judged ready; a pod without RDMA
// takes any.
func TestFitUsesPerGPUReadiness(t *testing.T) {
	_, nt := compile(t, "{name: gpu-node, shape: hgx-h100}")
	st := nt.Status.DeepCopy()
	farHalfNotReady(st)
	gpus := compileStatus(t, st)
	free := gpus.NewUsed(nil, nil)

	fit, unfit := gpus.Fit(req(4, rdma), free)
	require.Nil(t, unfit)
	require.ElementsMatch(t, []int32{0, 1, 2, 3}, fit.GPUs)
	require.True(t, fit.OneIsland)
	require.Equal(t, 4, fit.IslandFree, "only the ready GPUs count as free for an RDMA pod")

	_, unfit = gpus.Fit(req(5, rdma), free)
	require.NotNil(t, unfit)
	require.Equal(t, "only 4 free GPUs are ready for GPUDirect RDMA with an active NIC at PXB or nearer, pod needs 5", unfit.Reason)

	fit, unfit = gpus.Fit(req(8), free)
	require.Nil(t, unfit)
	require.Len(t, fit.GPUs, 8)

	// With two near GPUs taken, the far ones do not make up the difference.
	used := gpus.NewUsed(nil, nil)
	gpus.Mark(used, []int32{0, 1})
	_, unfit = gpus.Fit(req(4, rdma), used)
	require.NotNil(t, unfit)
	require.Contains(t, unfit.Reason, "only 2 free GPUs are ready for GPUDirect RDMA")
	fit, unfit = gpus.Fit(req(2, rdma), used)
	require.Nil(t, unfit)
	require.ElementsMatch(t, []int32{2, 3}, fit.GPUs)

	// No GPU ready: the node's reason, as before.
	for i := range st.GPUDirectRDMA.GPUs {
		st.GPUDirectRDMA.GPUs[i].Ready, st.GPUDirectRDMA.GPUs[i].BlockingChecks = false, []string{"pcie-path"}
	}
	_, unfit = compileStatus(t, st).Fit(req(1, rdma), free)
	require.NotNil(t, unfit)
	require.Equal(t, "GPUDirect RDMA check pcie-path: Fail NICAcrossHostBridge", unfit.Reason)
}

// A report without per-GPU readiness (an older agent) is judged by the
// node's verdict alone, as before: not ready refuses every RDMA pod, ready
// lets it use every GPU.
func TestFitWithoutPerGPUReadinessUsesTheNode(t *testing.T) {
	_, nt := compile(t, "{name: gpu-node, shape: hgx-h100}")
	st := nt.Status.DeepCopy()
	farHalfNotReady(st)
	st.GPUDirectRDMA.GPUs = nil
	_, unfit := compileStatus(t, st).Fit(req(1, rdma), compileStatus(t, st).NewUsed(nil, nil))
	require.NotNil(t, unfit)
	require.Equal(t, "GPUDirect RDMA check pcie-path: Fail NICAcrossHostBridge", unfit.Reason)

	gpus := compileStatus(t, nt.Status.DeepCopy())
	require.False(t, gpus.PerGPUReadiness)
	fit, unfit := gpus.Fit(req(8, rdma), gpus.NewUsed(nil, nil))
	require.Nil(t, unfit)
	require.Len(t, fit.GPUs, 8)
}

// A GPU the per-GPU list leaves out is not ready; entries that name no GPU,
// repeat one, or say ready while blocked make the report malformed.
func TestCompilePerGPUReadiness(t *testing.T) {
	_, nt := compile(t, "{name: gpu-node, shape: hgx-h100}")
	st := nt.Status.DeepCopy()
	farHalfNotReady(st)
	st.GPUDirectRDMA.GPUs = st.GPUDirectRDMA.GPUs[1:]
	fit, unfit := compileStatus(t, st).Fit(req(3, rdma), compileStatus(t, st).NewUsed(nil, nil))
	require.Nil(t, unfit)
	require.ElementsMatch(t, []int32{1, 2, 3}, fit.GPUs)

	for _, tc := range []struct {
		name   string
		mutate func(*topologyv1alpha1.NodeTopologyStatus)
		want   string
	}{
		{"unknown GPU", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUDirectRDMA.GPUs[2].GPU = 42 },
			"status.gpuDirectRDMA.gpus[2]: gpu 42 is not in status.gpus"},
		{"GPU twice", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUDirectRDMA.GPUs[3].GPU = 1 },
			"status.gpuDirectRDMA.gpus[3]: gpu 1 is also status.gpuDirectRDMA.gpus[1]"},
		{"ready but blocked", func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUDirectRDMA.GPUs[5].Ready = true },
			"status.gpuDirectRDMA.gpus[5]: gpu 5 is ready but blocked by [pcie-path]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := nt.Status.DeepCopy()
			farHalfNotReady(st)
			tc.mutate(st)
			_, err := topology.CompileNodeGPUs(topologysource.ReportOf(&topologyv1alpha1.NodeTopology{Status: *st}))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
