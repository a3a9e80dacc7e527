package nvlinktopo

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	clocktesting "k8s.io/utils/clock/testing"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// nearHalfReady makes the report what the agent publishes for a two-socket
// node whose GPUs 4-7 are far from the NICs: the node not ready, GPUs 0-3
// ready one by one. perGPU false leaves the per-GPU list out, as an older
// agent does.
func nearHalfReady(nt *topologyv1alpha1.NodeTopology, perGPU bool) {
	g := &nt.Status.GPUDirectRDMA
	g.Ready = false
	g.Checks = []topologyv1alpha1.GPUDirectCheck{
		{Name: "devices", Result: topologyv1alpha1.CheckPass},
		{Name: "pcie-path", Result: topologyv1alpha1.CheckFail, Reason: "NICAcrossHostBridge"},
	}
	g.GPUs = nil
	if !perGPU {
		return
	}
	for _, gpu := range nt.Status.GPUs {
		r := topologyv1alpha1.GPUDirectGPU{GPU: gpu.Index, Ready: gpu.Index < 4}
		if !r.Ready {
			r.BlockingChecks = []string{"pcie-path"}
		}
		g.GPUs = append(g.GPUs, r)
	}
}

// An RDMA pod needing 4 GPUs passes Filter on a node that is not GPUDirect
// ready as a whole but whose 4 near GPUs are, and its fit uses those; with
// 5 it does not fit; an older agent's report (no per-GPU readiness) refuses
// it as before.
func TestFilterRDMAPodUsesReadyGPUs(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		perGPU   bool
		gpus     string
		wantCode fwk.Code
		wantMsg  string
		wantFit  []int32
	}{
		{name: "four near GPUs ready", perGPU: true, gpus: "4", wantCode: fwk.Success, wantFit: []int32{0, 1, 2, 3}},
		{name: "five GPUs, four ready", perGPU: true, gpus: "5", wantCode: fwk.UnschedulableAndUnresolvable,
			wantMsg: "only 4 free GPUs are ready for GPUDirect RDMA with an active NIC at PXB or nearer, pod needs 5"},
		{name: "older agent, node not ready", perGPU: false, gpus: "4", wantCode: fwk.UnschedulableAndUnresolvable,
			wantMsg: "GPUDirect RDMA check pcie-path: Fail NICAcrossHostBridge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nt := nodeTopology(t, "n", now)
			nearHalfReady(nt, tc.perGPU)
			indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			require.NoError(t, indexer.Add(nt))
			pl, err := New(validArgs(), modelOf(indexer), clocktesting.NewFakePassiveClock(now))
			require.NoError(t, err)

			pod := st.MakePod().Name("p").Namespace("default").Req(map[v1.ResourceName]string{gpu: tc.gpus, "rdma/ib": "1"}).Obj()
			state := framework.NewCycleState()
			_, status := pl.PreFilter(context.Background(), state, pod, nil)
			require.True(t, status.IsSuccess(), status.Message())
			nodeInfo := framework.NewNodeInfo()
			nodeInfo.SetNode(st.MakeNode().Name("n").Obj())
			status = pl.Filter(context.Background(), state, pod, nodeInfo)
			require.Equal(t, tc.wantCode, status.Code(), status.Message())
			require.Equal(t, tc.wantMsg, status.Message())
			if tc.wantFit != nil {
				s, err := readPreFilterState(state)
				require.NoError(t, err)
				fit, ok := s.fits.Load("n")
				require.True(t, ok)
				require.ElementsMatch(t, tc.wantFit, fit.(topology.Fit).GPUs)
			}
		})
	}
}
