package topologysource

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// hgxNode is an HGX H100 board's NodeTopology and the ResourceSlice
// NVIDIA's DRA driver publishes for it.
func hgxNode(t *testing.T, name string) (*topology.Cluster, *resourcev1.ResourceSlice) {
	t.Helper()
	c, err := clusterdesc.Parse([]byte("nodes: [{name: " + name + ", shape: hgx-h100, leaf: l1}]"))
	if err != nil {
		t.Fatal(err)
	}
	nodes := c.Build(time.Now())
	cluster := topology.NewCluster()
	cluster.SetNodeLabels(name, nodes[0].Node.Labels)
	cluster.SetReport(name, ReportOf(nodes[0].Topology))
	return cluster, clusterdesc.NVIDIAResourceSlice(nodes[0].Topology)
}

func newTestDRA(t *testing.T, cluster *topology.Cluster) (*DRA, factoryInformers) {
	t.Helper()
	inf := factoryInformers{informers.NewSharedInformerFactory(fake.NewClientset(), 0)}
	d, err := NewDRA(klog.Background(), DRAConfig{DeviceClasses: []string{"gpu.nvidia.com"}, Driver: "gpu.nvidia.com"}, inf, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return d, inf
}

func gpuClaim(name string, requests ...resourcev1.DeviceRequest) *resourcev1.ResourceClaim {
	return &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: name},
		Spec:       resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: requests}},
	}
}

func exactly(class string, mode resourcev1.DeviceAllocationMode, count int64) resourcev1.DeviceRequest {
	return resourcev1.DeviceRequest{Name: "gpus", Exactly: &resourcev1.ExactDeviceRequest{DeviceClassName: class, AllocationMode: mode, Count: count}}
}

func claimPod(claims ...v1.PodResourceClaim) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: "prefill-0", UID: "uid-prefill-0"}, Spec: v1.PodSpec{ResourceClaims: claims}}
}

func TestDRARequest(t *testing.T) {
	cluster, slice := hgxNode(t, "hgx-0")
	d, inf := newTestDRA(t, cluster)
	d.setSlice(slice, false)
	if got := d.NodeGPUs("hgx-0"); got != 8 {
		t.Fatalf("NodeGPUs = %d, want the slice's 8", got)
	}
	add := func(c *resourcev1.ResourceClaim) {
		if err := inf.ResourceClaims().GetIndexer().Add(c); err != nil {
			t.Fatal(err)
		}
	}
	add(gpuClaim("tp4", exactly("gpu.nvidia.com", resourcev1.DeviceAllocationModeExactCount, 4)))
	add(gpuClaim("one", exactly("gpu.nvidia.com", "", 0)))
	add(gpuClaim("all", exactly("gpu.nvidia.com", resourcev1.DeviceAllocationModeAll, 0)))
	add(gpuClaim("nic", exactly("rdma.example.com", resourcev1.DeviceAllocationModeExactCount, 2)))
	add(gpuClaim("either", resourcev1.DeviceRequest{Name: "gpus", FirstAvailable: []resourcev1.DeviceSubRequest{
		{Name: "eight", DeviceClassName: "gpu.nvidia.com", Count: 8}, {Name: "four", DeviceClassName: "gpu.nvidia.com", Count: 4},
	}}))
	add(gpuClaim("huge", exactly("gpu.nvidia.com", resourcev1.DeviceAllocationModeExactCount, 5000)))
	add(gpuClaim("weird", exactly("gpu.nvidia.com", "Some", 1)))
	named := func(pc, claim string) v1.PodResourceClaim {
		return v1.PodResourceClaim{Name: pc, ResourceClaimName: ptr.To(claim)}
	}
	for _, tc := range []struct {
		name    string
		pod     *v1.Pod
		count   int
		all     bool
		wantErr string
	}{
		{name: "exact count", pod: claimPod(named("gpus", "tp4")), count: 4},
		{name: "count defaults to one", pod: claimPod(named("gpus", "one")), count: 1},
		{name: "claims add up, other classes do not count", pod: claimPod(named("gpus", "tp4"), named("g2", "one"), named("nics", "nic")), count: 5},
		{name: "all of the node", pod: claimPod(named("gpus", "all")), all: true},
		{name: "first available counts the fewest", pod: claimPod(named("gpus", "either")), count: 4},
		{name: "claim missing", pod: claimPod(named("gpus", "absent")), wantErr: "pod llm/prefill-0: spec.resourceClaims[0] (gpus): ResourceClaim llm/absent not found"},
		{name: "count out of bounds", pod: claimPod(named("gpus", "huge")), wantErr: "ResourceClaim llm/huge: spec.devices.requests[0].exactly.count: 5000 is not in 1..1024"},
		{name: "unknown mode", pod: claimPod(named("gpus", "weird")), wantErr: `ResourceClaim llm/weird: spec.devices.requests[0].exactly.allocationMode: "Some" is not ExactCount or All`},
		{name: "template claim not created", pod: claimPod(v1.PodResourceClaim{Name: "gpus", ResourceClaimTemplateName: ptr.To("tp4-template")}),
			wantErr: "spec.resourceClaims[0] (gpus): the ResourceClaim from template tp4-template is not created yet (no status.resourceClaimStatuses entry)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := d.Request(tc.pod)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Count != tc.count || req.AllOfNode != tc.all {
				t.Errorf("request = %+v, want count %d, all %v", req, tc.count, tc.all)
			}
		})
	}
	t.Run("template claim created", func(t *testing.T) {
		pod := claimPod(v1.PodResourceClaim{Name: "gpus", ResourceClaimTemplateName: ptr.To("tp4-template")})
		pod.Status.ResourceClaimStatuses = []v1.PodResourceClaimStatus{{Name: "gpus", ResourceClaimName: ptr.To("tp4")}}
		req, err := d.Request(pod)
		if err != nil || req.Count != 4 {
			t.Fatalf("request = %+v, %v; want 4 GPUs from claim tp4", req, err)
		}
		if got := req.GPUs(d.NodeGPUs("hgx-0")); got != 4 {
			t.Errorf("GPUs on hgx-0 = %d, want 4", got)
		}
	})
	t.Run("allocated claims are not asked for again", func(t *testing.T) {
		c := gpuClaim("bound", exactly("gpu.nvidia.com", resourcev1.DeviceAllocationModeExactCount, 2))
		c.Status.Allocation = &resourcev1.AllocationResult{}
		add(c)
		req, err := d.Request(claimPod(named("gpus", "bound"), named("g2", "one")))
		if err != nil || req.Count != 1 || len(req.Allocated) != 1 || req.Allocated[0] != "llm/bound" {
			t.Fatalf("request = %+v, %v; want 1 GPU and llm/bound allocated", req, err)
		}
	})
}

func allocated(c *resourcev1.ResourceClaim, node string, devices ...string) *resourcev1.ResourceClaim {
	c.Status.Allocation = &resourcev1.AllocationResult{}
	for _, dev := range devices {
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results,
			resourcev1.DeviceRequestAllocationResult{Request: "gpus", Driver: "gpu.nvidia.com", Pool: node, Device: dev})
	}
	return c
}

func freeOn(t *testing.T, c *topology.Cluster, node string) []int {
	t.Helper()
	v, ok := c.Node(node)
	if !ok || v.GPUs == nil {
		t.Fatalf("node %s not in the model", node)
	}
	return v.GPUs.FreeByIsland(v.Used)
}

func TestDRAAllocatedClaimsHoldGPUs(t *testing.T) {
	cluster, slice := hgxNode(t, "hgx-0")
	d, _ := newTestDRA(t, cluster)
	claim := allocated(gpuClaim("tp4", exactly("gpu.nvidia.com", resourcev1.DeviceAllocationModeExactCount, 4)), "hgx-0", "gpu-0", "gpu-1", "gpu-2", "gpu-3")
	claim.Status.ReservedFor = []resourcev1.ResourceClaimConsumerReference{{Resource: "pods", Name: "prefill-0", UID: "uid-prefill-0"}}

	// The claim arrives before the slice that names its devices: it
	// waits, and counts once the slice is known.
	d.setClaim(claim, false)
	if got := freeOn(t, cluster, "hgx-0"); got[0] != 8 {
		t.Fatalf("free before the slice = %v, want 8", got)
	}
	// The scheduler's ledger guessed other GPUs for the pod; the claim
	// replaces the guess.
	_, unfit, reason := cluster.Reserve("uid-prefill-0", "llm/prefill-0", "hgx-0", topology.GPURequest{Count: 4, Island: topology.IslandRequired}, topology.Usable)
	if unfit != nil || reason != "" {
		t.Fatalf("reserve: %v %q", unfit, reason)
	}
	d.setSlice(slice, false)
	if got := freeOn(t, cluster, "hgx-0"); got[0] != 4 {
		t.Fatalf("free with the claim allocated = %v, want 4", got)
	}
	if cluster.LedgerSize() != 0 {
		t.Errorf("ledger still holds %d pods after the claim named their GPUs", cluster.LedgerSize())
	}
	v, _ := cluster.Node("hgx-0")
	for i := 0; i < 8; i++ {
		if v.Used[i] != (i < 4) {
			t.Errorf("GPU %d used = %v, want %v (the claim holds gpu-0..gpu-3)", i, v.Used[i], i < 4)
		}
	}
	// Deallocated: the GPUs are free again.
	claim = claim.DeepCopy()
	claim.Status.Allocation = nil
	d.setClaim(claim, false)
	if got := freeOn(t, cluster, "hgx-0"); got[0] != 8 {
		t.Errorf("free after deallocation = %v, want 8", got)
	}
}

func TestDRAResolvesByPCIBusID(t *testing.T) {
	cluster, slice := hgxNode(t, "hgx-0")
	for i := range slice.Spec.Devices {
		delete(slice.Spec.Devices[i].Attributes, "uuid")
	}
	d, _ := newTestDRA(t, cluster)
	d.setSlice(slice, false)
	d.setClaim(allocated(gpuClaim("two", exactly("gpu.nvidia.com", "", 2)), "hgx-0", "gpu-6", "gpu-7"), false)
	v, _ := cluster.Node("hgx-0")
	if !v.Used[6] || !v.Used[7] || v.Used[0] {
		t.Errorf("used = %v, want GPUs 6 and 7 (matched by pcieBusID)", v.Used)
	}
}

// The agent publishes the GPUs the kubelet prepared for a pod's claims in
// status.gpuAllocations, and the scheduler reads the same GPUs from the
// allocated claim: each GPU counts once, whichever arrives first, matched
// by uuid or (a slice without uuids) by pcieBusID.
func TestDRAClaimAndAgentReportCountEachGPUOnce(t *testing.T) {
	for _, byPCI := range []bool{false, true} {
		c, err := clusterdesc.Parse([]byte("nodes: [{name: hgx-0, shape: hgx-h100, leaf: l1}]"))
		if err != nil {
			t.Fatal(err)
		}
		nt := c.Build(time.Now())[0].Topology
		slice := clusterdesc.NVIDIAResourceSlice(nt)
		if byPCI {
			for i := range slice.Spec.Devices {
				delete(slice.Spec.Devices[i].Attributes, "uuid")
			}
		}
		cluster := topology.NewCluster()
		cluster.SetReport("hgx-0", ReportOf(nt))
		d, _ := newTestDRA(t, cluster)
		d.setSlice(slice, false)
		claim := allocated(gpuClaim("tp4", exactly("gpu.nvidia.com", "", 4)), "hgx-0", "gpu-0", "gpu-1", "gpu-2", "gpu-3")
		claim.Status.ReservedFor = []resourcev1.ResourceClaimConsumerReference{{Resource: "pods", Name: "prefill-0", UID: "uid-prefill-0"}}
		d.setClaim(claim, false)
		if got := freeOn(t, cluster, "hgx-0"); got[0] != 4 {
			t.Fatalf("byPCI=%v: free with the claim = %v, want 4", byPCI, got)
		}

		// The agent's next report names the claim's GPUs for the pod, and a
		// device-plugin pod on GPU 4.
		withAllocs := nt.DeepCopy()
		var held []string
		for _, g := range nt.Status.GPUs[:4] {
			held = append(held, g.UUID)
		}
		withAllocs.Status.GPUAllocations = []topologyv1alpha1.GPUAllocation{
			{Pod: "llm/prefill-0", GPUs: held},
			{Pod: "llm/other", GPUs: []string{nt.Status.GPUs[4].UUID}},
		}
		cluster.SetReport("hgx-0", ReportOf(withAllocs))
		if got := freeOn(t, cluster, "hgx-0"); got[0] != 3 {
			t.Fatalf("byPCI=%v: free with the claim and the report naming its GPUs = %v, want 3 (8 less 4 held by the claim and reported, less 1)", byPCI, got)
		}
		// The claim going away leaves the report's count, and the report
		// dropping the pod leaves the other pod's.
		d.setClaim(claim, true)
		if got := freeOn(t, cluster, "hgx-0"); got[0] != 3 {
			t.Fatalf("byPCI=%v: free with the report alone = %v, want 3", byPCI, got)
		}
		withAllocs.Status.GPUAllocations = withAllocs.Status.GPUAllocations[1:]
		cluster.SetReport("hgx-0", ReportOf(withAllocs))
		if got := freeOn(t, cluster, "hgx-0"); got[0] != 7 {
			t.Fatalf("byPCI=%v: free once both forget the pod = %v, want 7", byPCI, got)
		}
	}
}

// The model fits first-fit DRA requests in the order of the one slice that
// publishes a node's GPUs; a second slice with GPUs on the node makes the
// order unknown (the allocator's order across slices is not the
// informer's), and deleting it makes it known again.
func TestDRATellsTheModelTheAllocationOrder(t *testing.T) {
	c, err := clusterdesc.Parse([]byte("nodes: [{name: nvl-0, shape: h100-nvl, leaf: l1, allocatedGPUs: [0]}]"))
	if err != nil {
		t.Fatal(err)
	}
	nodes := c.Build(time.Now())
	cluster := topology.NewCluster()
	cluster.SetNodeLabels("nvl-0", nodes[0].Node.Labels)
	cluster.SetReport("nvl-0", ReportOf(nodes[0].Topology))
	d, _ := newTestDRA(t, cluster)
	tp2 := topology.GPURequest{Count: 2, Island: topology.IslandRequired, MaxNICLevel: topology.PCIeLevelPXB, FirstFit: true}
	fits := func() bool {
		_, unfit, _, ok := cluster.Fit("nvl-0", tp2)
		if !ok {
			t.Fatal("nvl-0 is not in the model")
		}
		return unfit == nil
	}
	if !fits() {
		t.Fatal("with no slice known, tandem's own pick (a free pair) should fit")
	}
	slice := clusterdesc.NVIDIAResourceSlice(nodes[0].Topology)
	d.setSlice(slice, false)
	if fits() {
		t.Fatal("in the slice's order the allocator takes GPUs 1 and 2, across two pairs: want no fit")
	}
	other := slice.DeepCopy()
	other.Name += "-extra"
	other.Spec.Pool.Name += "-extra"
	d.setSlice(other, false)
	if !fits() {
		t.Fatal("with two slices publishing GPUs on the node the order is unknown: want tandem's own pick")
	}
	d.setSlice(other, true)
	if fits() {
		t.Fatal("the second slice deleted, the first one's order applies again")
	}
	d.setSlice(slice, true)
	if !fits() {
		t.Fatal("every slice deleted, no order is left")
	}
}
