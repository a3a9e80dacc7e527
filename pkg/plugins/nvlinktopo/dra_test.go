package nvlinktopo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	resourcelisters "k8s.io/client-go/listers/resource/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// factoryDRA serves NewDRA from a shared informer factory, as the
// scheduler's does.
type factoryDRA struct {
	f informers.SharedInformerFactory
}

func (i factoryDRA) ResourceClaims() cache.SharedIndexInformer {
	return i.f.Resource().V1().ResourceClaims().Informer()
}

func (i factoryDRA) ResourceClaimLister() resourcelisters.ResourceClaimLister {
	return i.f.Resource().V1().ResourceClaims().Lister()
}

func (i factoryDRA) ResourceSlices() cache.SharedIndexInformer {
	return i.f.Resource().V1().ResourceSlices().Informer()
}

// tp4Claim is a claim for four GPUs of NVIDIA's class, allocated on node
// (the given devices) or not (none given).
func tp4Claim(name, node string, devices ...int) *resourcev1.ResourceClaim {
	c := &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: name},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name: "gpus", Exactly: &resourcev1.ExactDeviceRequest{DeviceClassName: clusterdesc.NVIDIADriver, AllocationMode: resourcev1.DeviceAllocationModeExactCount, Count: 4},
		}}}},
	}
	if len(devices) > 0 {
		c.Status.Allocation = &resourcev1.AllocationResult{}
		for _, d := range devices {
			c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, resourcev1.DeviceRequestAllocationResult{
				Request: "gpus", Driver: clusterdesc.NVIDIADriver, Pool: node, Device: fmt.Sprintf("gpu-%d", d)})
		}
	}
	return c
}

// A pod whose four GPUs come from a ResourceClaim fits only a node where
// four free GPUs share one NVLink island, free counting the GPUs other
// claims hold.
func TestFilterDRAClaim(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	desc, err := clusterdesc.Parse([]byte(`nodes:
- {name: hgx-free, shape: hgx-h100, leaf: l1}
- {name: hgx-half, shape: hgx-h100, leaf: l1}
- {name: hgx-full, shape: hgx-h100, leaf: l1}
- {name: nvl, shape: h100-nvl, leaf: l1}
`))
	require.NoError(t, err)
	nodes := desc.Build(now)
	var objs []runtime.Object
	cluster := topology.NewCluster()
	for _, n := range nodes {
		cluster.SetReport(n.Node.Name, topologysource.ReportOf(n.Topology))
		objs = append(objs, clusterdesc.NVIDIAResourceSlice(n.Topology))
	}
	objs = append(objs,
		tp4Claim("held-half", "hgx-half", 0, 2, 4, 6),
		tp4Claim("held-full-a", "hgx-full", 0, 1, 2, 3),
		tp4Claim("held-full-b", "hgx-full", 4, 5),
		tp4Claim("engine", ""),
	)
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	dra, err := topologysource.NewDRA(klog.Background(), topologysource.DRAConfig{DeviceClasses: []string{clusterdesc.NVIDIADriver}, Driver: clusterdesc.NVIDIADriver},
		factoryDRA{factory}, cluster)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	require.Eventually(t, func() bool {
		v, _ := cluster.Node("hgx-full")
		return v.Used != nil && v.Used[5]
	}, 10*time.Second, 10*time.Millisecond, "the allocated claims never reached the model")

	pl, err := New(validArgs(), cluster, clocktesting.NewFakePassiveClock(now))
	require.NoError(t, err)
	pl.dra = dra
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: "prefill-0", UID: "p0"},
		Spec: v1.PodSpec{ResourceClaims: []v1.PodResourceClaim{{Name: "gpus", ResourceClaimName: ptr.To("engine")}}}}
	state := framework.NewCycleState()
	_, status := pl.PreFilter(ctx, state, pod, nil)
	require.True(t, status.IsSuccess(), "PreFilter: %v", status)
	s, err := readPreFilterState(state)
	require.NoError(t, err)
	require.Equal(t, 4, s.request.Count)

	want := map[string]fwk.Code{"hgx-free": fwk.Success, "hgx-half": fwk.Success, "hgx-full": fwk.Unschedulable, "nvl": fwk.Unschedulable}
	for _, n := range nodes {
		ni := framework.NewNodeInfo()
		ni.SetNode(n.Node)
		got := pl.Filter(ctx, state, pod, ni)
		require.Equal(t, want[n.Node.Name], got.Code(), "node %s: %v", n.Node.Name, got)
	}

	// Reserved on hgx-half, the pod takes the four GPUs the other claim
	// left: the node has no room for a second one.
	require.True(t, pl.Reserve(ctx, state, pod, "hgx-half").IsSuccess())
	ni := framework.NewNodeInfo()
	ni.SetNode(nodes[1].Node)
	require.False(t, pl.Filter(ctx, state, pod, ni).IsSuccess())
}

// A claim that cannot be read leaves the pod unschedulable with a message
// naming the claim, and a pod whose claims are all allocated is not
// evaluated again.
func TestPreFilterDRAClaimErrors(t *testing.T) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	dra, err := topologysource.NewDRA(klog.Background(), topologysource.DRAConfig{DeviceClasses: []string{clusterdesc.NVIDIADriver}, Driver: clusterdesc.NVIDIADriver},
		factoryDRA{factory}, topology.NewCluster())
	require.NoError(t, err)
	done := tp4Claim("done", "hgx-0", 0, 1, 2, 3)
	require.NoError(t, factory.Resource().V1().ResourceClaims().Informer().GetIndexer().Add(done))
	pl, err := New(validArgs(), topology.NewCluster(), clocktesting.NewFakePassiveClock(time.Now()))
	require.NoError(t, err)
	pl.dra = dra
	pod := func(claim string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: "decode-0"},
			Spec: v1.PodSpec{ResourceClaims: []v1.PodResourceClaim{{Name: "gpus", ResourceClaimName: ptr.To(claim)}}}}
	}
	_, status := pl.PreFilter(context.Background(), framework.NewCycleState(), pod("missing"), nil)
	require.Equal(t, fwk.UnschedulableAndUnresolvable, status.Code())
	require.True(t, strings.Contains(status.Message(), "spec.resourceClaims[0] (gpus): ResourceClaim llm/missing not found"), status.Message())
	_, status = pl.PreFilter(context.Background(), framework.NewCycleState(), pod("done"), nil)
	require.Equal(t, fwk.Skip, status.Code())
}

// A pod that claims its NIC through DRA (a DRANET-style class) as well as
// its GPUs needs GPUDirect RDMA, as one requesting an RDMA extended resource
// does: a node whose GPUDirect checks failed is filtered out. Without the
// class in draRDMADeviceClassNames the NIC claim is just another device.
func TestFilterDRANICClaimNeedsGPUDirect(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	desc, err := clusterdesc.Parse([]byte(`nodes:
- {name: hgx-ready, shape: hgx-h100, leaf: l1}
- {name: hgx-broken, shape: hgx-h100, leaf: l1, gpuDirectBroken: true}
`))
	require.NoError(t, err)
	nodes := desc.Build(now)
	engine := tp4Claim("engine", "")
	engine.Spec.Devices.Requests = append(engine.Spec.Devices.Requests, resourcev1.DeviceRequest{
		Name: "nic", Exactly: &resourcev1.ExactDeviceRequest{DeviceClassName: "dranet", AllocationMode: resourcev1.DeviceAllocationModeExactCount, Count: 1}})
	engine.Spec.Devices.Constraints = []resourcev1.DeviceConstraint{{Requests: []string{"gpus", "nic"}, MatchAttribute: ptr.To(resourcev1.FullyQualifiedName("resource.kubernetes.io/pcieRoot"))}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: "decode-0", UID: "d0"},
		Spec: v1.PodSpec{ResourceClaims: []v1.PodResourceClaim{{Name: "engine", ResourceClaimName: ptr.To("engine")}}}}

	for _, tc := range []struct {
		name        string
		rdmaClasses []string
		want        map[string]fwk.Code
	}{
		{name: "NIC class configured", rdmaClasses: []string{"dranet"}, want: map[string]fwk.Code{"hgx-ready": fwk.Success, "hgx-broken": fwk.UnschedulableAndUnresolvable}},
		{name: "NIC class not configured", want: map[string]fwk.Code{"hgx-ready": fwk.Success, "hgx-broken": fwk.Success}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := topology.NewCluster()
			objs := []runtime.Object{engine.DeepCopy()}
			for _, n := range nodes {
				cluster.SetNodeLabels(n.Node.Name, n.Node.Labels)
				cluster.SetReport(n.Node.Name, topologysource.ReportOf(n.Topology))
				objs = append(objs, clusterdesc.NVIDIAResourceSlice(n.Topology))
			}
			factory := informers.NewSharedInformerFactory(fake.NewClientset(objs...), 0)
			args := validArgs()
			args.DRARDMADeviceClassNames = tc.rdmaClasses
			dra, err := topologysource.NewDRA(klog.Background(), topologysource.DRAConfig{DeviceClasses: []string{clusterdesc.NVIDIADriver}, Driver: clusterdesc.NVIDIADriver,
				RDMAClasses: args.DRARDMADeviceClassNames}, factoryDRA{factory}, cluster)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			factory.Start(ctx.Done())
			factory.WaitForCacheSync(ctx.Done())

			pl, err := New(args, cluster, clocktesting.NewFakePassiveClock(now))
			require.NoError(t, err)
			pl.dra = dra
			state := framework.NewCycleState()
			_, status := pl.PreFilter(ctx, state, pod, nil)
			require.True(t, status.IsSuccess(), "PreFilter: %v", status)
			s, err := readPreFilterState(state)
			require.NoError(t, err)
			require.Equal(t, 4, s.request.Count, "the NIC request is not a GPU")
			require.Equal(t, len(tc.rdmaClasses) > 0, s.request.NeedRDMA)
			for _, n := range nodes {
				ni := framework.NewNodeInfo()
				ni.SetNode(n.Node)
				got := pl.Filter(ctx, state, pod, ni)
				require.Equal(t, tc.want[n.Node.Name], got.Code(), "node %s: %v", n.Node.Name, got)
				if !got.IsSuccess() {
					require.Contains(t, got.Message(), "GPUDirect", "node %s: the refusal names the reason", n.Node.Name)
				}
			}
		})
	}
}
