package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/plugins/nvlinktopo"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// createGPUClaim creates a ResourceClaim for count whole GPUs of NVIDIA's
// DeviceClass.
func createGPUClaim(t *testing.T, cp *controlplane.ControlPlane, name string, count int64) {
	t.Helper()
	claim := &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name: "gpus",
			Exactly: &resourcev1.ExactDeviceRequest{
				DeviceClassName: clusterdesc.NVIDIADriver,
				AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
				Count:           count,
			},
		}}}},
	}
	if _, err := cp.Client.ResourceV1().ResourceClaims(namespace).Create(context.Background(), claim, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ResourceClaim %s: %v", name, err)
	}
}

// withClaim has the pod's engine container use the ResourceClaim claim, as
// spec.resourceClaims[0] named "gpus".
func withClaim(claim string) podOption {
	return func(p *v1.Pod) {
		p.Spec.ResourceClaims = append(p.Spec.ResourceClaims, v1.PodResourceClaim{Name: "gpus", ResourceClaimName: &claim})
		p.Spec.Containers[0].Resources.Claims = append(p.Spec.Containers[0].Resources.Claims, v1.ResourceClaim{Name: "gpus"})
	}
}

// withGPUClaim creates a claim for count GPUs named after the pod and has
// the pod use it.
func withGPUClaim(t *testing.T, cp *controlplane.ControlPlane, count int64) podOption {
	return func(p *v1.Pod) {
		createGPUClaim(t, cp, p.Name+"-gpus", count)
		withClaim(p.Name + "-gpus")(p)
	}
}

func withNodeSelector(node string) podOption {
	return func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{v1.LabelHostname: node} }
}

// waitForClaimAllocation waits until the claim is allocated and reserved for
// the pod, and returns the node of its devices (each result's pool: the
// driver names a node's pool after the node) and the devices.
func waitForClaimAllocation(t *testing.T, cp *controlplane.ControlPlane, claim, pod string) (string, []string) {
	t.Helper()
	p, err := cp.Client.CoreV1().Pods(namespace).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got *resourcev1.ResourceClaim
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		got, err = cp.Client.ResourceV1().ResourceClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		reserved := slices.ContainsFunc(got.Status.ReservedFor, func(r resourcev1.ResourceClaimConsumerReference) bool { return r.UID == p.UID })
		return got.Status.Allocation != nil && reserved, nil
	})
	if err != nil {
		t.Fatalf("ResourceClaim %s was not allocated and reserved for pod %s: %v; status %+v", claim, pod, err, got.Status)
	}
	nodes := map[string]bool{}
	var devices []string
	for _, r := range got.Status.Allocation.Devices.Results {
		if r.Driver != clusterdesc.NVIDIADriver {
			t.Errorf("ResourceClaim %s: result %+v is not of driver %s", claim, r, clusterdesc.NVIDIADriver)
		}
		nodes[r.Pool] = true
		devices = append(devices, r.Pool+"/"+r.Device)
	}
	if len(nodes) != 1 {
		t.Fatalf("ResourceClaim %s allocated on pools %v, want one node's", claim, nodes)
	}
	var node string
	for n := range nodes {
		node = n
	}
	return node, devices
}

func TestDRATensorParallelPodGetsAFreeNVLinkIsland(t *testing.T) {
	// Both nodes publish their GPUs through NVIDIA's DRA driver. The H100
	// NVL node has all eight free, but in NVLink pairs; the HGX board has
	// four free once another tenant's claim holds four, all on its
	// NVSwitch island. Counting free devices alone, the NVL node fits a
	// TP=4 claim better.
	cp := startCluster(t, `
nodes:
- {name: nvl, shape: h100-nvl, leaf: l1, gpuAllocation: dra}
- {name: hgx, shape: hgx-h100, leaf: l1, gpuAllocation: dra}
`)
	createPod(t, cp, "holder", 0, withGPUClaim(t, cp, 4), withNodeSelector("hgx"))
	waitForBinding(t, cp, "holder")
	_, held := waitForClaimAllocation(t, cp, "holder-gpus", "holder")

	createPod(t, cp, "tp4", 0, withGPUClaim(t, cp, 4))
	if node := waitForBinding(t, cp, "tp4"); node != "hgx" {
		t.Fatalf("DRA TP=4 pod bound to %s, want hgx (the NVL node has no free island of 4); events: %s", node, eventsFor(cp, "tp4"))
	}
	node, devices := waitForClaimAllocation(t, cp, "tp4-gpus", "tp4")
	if node != "hgx" {
		t.Errorf("claim tp4-gpus allocated on %s's devices %v, the pod is on hgx", node, devices)
	}
	for _, d := range devices {
		if slices.Contains(held, d) {
			t.Errorf("claim tp4-gpus got device %s, which holder-gpus holds", d)
		}
	}

	// Nothing is left on one island anywhere: the board's GPUs are all
	// claimed, and on the NVL node the allocator would take GPUs 0-3, two
	// NVLink pairs. The pod waits and says why.
	createPod(t, cp, "tp4-more", 0, withGPUClaim(t, cp, 4))
	waitForFailedScheduling(t, cp, "tp4-more", "the DRA allocator takes the first free GPUs in its ResourceSlice's order, [0 1 2 3], which span 2 NVLink islands")

	// A TP=2 engine fits an NVLink pair of the NVL node.
	createPod(t, cp, "tp2", 0, withGPUClaim(t, cp, 2))
	if node := waitForBinding(t, cp, "tp2"); node != "nvl" {
		t.Fatalf("DRA TP=2 pod bound to %s, want nvl", node)
	}
	if node, devices := waitForClaimAllocation(t, cp, "tp2-gpus", "tp2"); node != "nvl" {
		t.Errorf("claim tp2-gpus allocated on %s (%v), the pod is on nvl", node, devices)
	}
}

// draRack is an NVL72 rack of four GB200 trays under two leaves, and two
// HGX boards under a third; gpuAllocation is filled in.
const draRack = `
nodes:
- {name: r1-a, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l1, nvlinkDomain: rack1, gpuAllocation: %[1]s}
- {name: r1-b, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l2, nvlinkDomain: rack1, gpuAllocation: %[1]s}
- {name: hgx, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l3, gpuAllocation: %[1]s}
`

func TestDRAUnitPairsAsTheDevicePluginUnitDoes(t *testing.T) {
	// The same 1P3D unit of TP=4 engines (16 GPUs) on the same cluster,
	// once with device-plugin GPUs and once with DRA GPUs, each pod's
	// claim asking for four: every decode on NVLink with its prefill,
	// which only the rack offers.
	classes := map[clusterdesc.GPUAllocation]map[topology.PathClass]int{}
	for _, alloc := range []clusterdesc.GPUAllocation{clusterdesc.GPUAllocationDevicePlugin, clusterdesc.GPUAllocationDRA} {
		t.Run(string(alloc), func(t *testing.T) {
			cp := startCluster(t, fmt.Sprintf(draRack, alloc))
			createPodGroup(t, cp, "r", 4, 0)
			var pods []string
			if alloc == clusterdesc.GPUAllocationDRA {
				for i, role := range []string{"prefill", "decode", "decode", "decode"} {
					name := fmt.Sprintf("r-%s-%d", role, i)
					createPod(t, cp, name, 0, withGPUClaim(t, cp, 4), withLabels(pdaffinity.LabelRole, role, pdaffinity.LabelGroup, "r", pdaffinity.LabelPodGroup, "r"))
					pods = append(pods, name)
				}
			} else {
				pods = createUnit(t, cp, "r", 1, 3, 4, withLabels(pdaffinity.LabelPodGroup, "r"))
			}
			placed := placements(t, cp, pods)
			if d := distinct(placed, topology.LabelNVLinkDomain); len(d) != 1 || !d["rack1/"] {
				t.Errorf("unit placed in NVLink domains %v, want rack1", d)
			}
			classes[alloc] = decodeClasses(t, cp, placed)
			if alloc == clusterdesc.GPUAllocationDRA {
				for _, p := range pods {
					if node, devices := waitForClaimAllocation(t, cp, p+"-gpus", p); node != placed[p][v1.LabelHostname] {
						t.Errorf("claim %s-gpus allocated on %s (%v), pod %s is on %s", p, node, devices, p, placed[p][v1.LabelHostname])
					}
				}
			}
		})
	}
	dp, dra := classes[clusterdesc.GPUAllocationDevicePlugin], classes[clusterdesc.GPUAllocationDRA]
	if dra[topology.LevelNVLinkDomain] != 3 || dp[topology.LevelNVLinkDomain] != dra[topology.LevelNVLinkDomain] {
		t.Errorf("decode path classes: device plugin %v, DRA %v; want all three decodes on NVLink with the prefill in both", dp, dra)
	}
}

func TestMixedClusterPlacesEachKindOnItsNodes(t *testing.T) {
	// An NVL72 rack's four trays take device-plugin pods; two HGX boards
	// take DRA pods: 16 GPUs each way. A 1P3D unit of TP=4 engines (16
	// GPUs) has its best domain in the rack whichever way it gets its
	// GPUs, so a plan blind to the allocation path puts the DRA unit
	// there, where no node can serve its claims.
	cp := startCluster(t, `
nodes:
- {name: dp-rack, count: 4, shape: gb200-tray, zone: z1, spine: s1, leaf: l1, nvlinkDomain: rack1}
- {name: dra, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l2, gpuAllocation: dra}
`)
	dra := map[string]bool{}
	createPodGroup(t, cp, "u-dra", 4, 0)
	var pods []string
	for i, role := range []string{"prefill", "decode", "decode", "decode"} {
		name := fmt.Sprintf("u-dra-%s-%d", role, i)
		createPod(t, cp, name, 0, withGPUClaim(t, cp, 4), withLabels(pdaffinity.LabelRole, role, pdaffinity.LabelGroup, "u-dra", pdaffinity.LabelPodGroup, "u-dra"))
		pods, dra[name] = append(pods, name), true
	}
	createPodGroup(t, cp, "u-dp", 4, 0)
	pods = append(pods, createUnit(t, cp, "u-dp", 1, 3, 4, withLabels(pdaffinity.LabelPodGroup, "u-dp"))...)
	for _, p := range pods {
		node := waitForBinding(t, cp, p)
		if wantDRA := dra[p]; strings.HasPrefix(node, "dra-") != wantDRA {
			t.Errorf("pod %s (DRA: %v) bound to %s", p, wantDRA, node)
		}
		if dra[p] {
			if claimNode, devices := waitForClaimAllocation(t, cp, p+"-gpus", p); claimNode != node {
				t.Errorf("claim %s-gpus allocated on %s (%v), pod %s is on %s", p, claimNode, devices, p, node)
			}
		}
	}
	// Each unit was planned onto nodes of its kind at once: no pod
	// failed a scheduling attempt on the way, other than waiting for its
	// PodGroup's pods to be created.
	for _, p := range pods {
		events, err := listEvents(context.Background(), cp, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Reason == "FailedScheduling" && !strings.Contains(e.Message, "fewer than its minMember") {
				t.Errorf("pod %s: %s %s", p, e.Reason, e.Message)
			}
		}
	}
}

func TestUnreadableClaimLeavesPodPendingWithReason(t *testing.T) {
	cp := startCluster(t, `nodes: [{name: hgx, shape: hgx-h100, leaf: l1, gpuAllocation: dra}]`)
	// A claim the apiserver accepts but tandem cannot place: 2,000 GPUs on
	// one island. NVLinkTopo names the claim and the field.
	createPod(t, cp, "greedy", 0, withGPUClaim(t, cp, 2000))
	waitForFailedScheduling(t, cp, "greedy", "ResourceClaim default/greedy-gpus", "spec.devices.requests[0].exactly.count", "2000 is not in 1..1024")

	// A claim that does not exist: DynamicResources' PreEnqueue keeps the
	// pod out of the scheduling queue until it does, so no plugin's Filter
	// sees it and kube-scheduler records no event. It stays unbound.
	createPod(t, cp, "orphan", 0, withClaim("no-such-claim"))
	time.Sleep(5 * time.Second)
	for _, p := range []string{"orphan", "greedy"} {
		pod, err := cp.Client.CoreV1().Pods(namespace).Get(context.Background(), p, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName != "" {
			t.Errorf("pod %s bound to %s", p, pod.Spec.NodeName)
		}
	}
	// The claim arriving lets the pod schedule, its devices on the node.
	createGPUClaim(t, cp, "no-such-claim", 4)
	if node := waitForBinding(t, cp, "orphan"); node != "hgx" {
		t.Errorf("pod orphan bound to %s, want hgx", node)
	}
	waitForClaimAllocation(t, cp, "no-such-claim", "orphan")
}

// The DynamicResources plugin's allocator takes the first free GPUs in the
// node's ResourceSlice order, whatever the NVLink islands; tandem cannot
// make it take others, so it does not choose a node where that pick would
// split a TP=2 claim across two NVLink pairs. On H100 NVL nodes (NVLink
// pairs 0-1, 2-3, ...) one tenant holds GPU 0 of nvl-a and another GPUs 0
// and 1 of nvl-b: on nvl-a the allocator would take GPUs 1 and 2, on nvl-b
// the pair 2-3. Three TP=2 claims take nvl-b's three free pairs; the fourth
// stays pending and says why rather than land split on nvl-a.
func TestDRAClaimIsNotPlacedWhereTheAllocatorWouldSplitIt(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: nvl-a, shape: h100-nvl, leaf: l1, gpuAllocation: dra}
- {name: nvl-b, shape: h100-nvl, leaf: l1, gpuAllocation: dra}
`)
	createPod(t, cp, "holder-a", 0, withGPUClaim(t, cp, 1), withNodeSelector("nvl-a"))
	createPod(t, cp, "holder-b", 0, withGPUClaim(t, cp, 2), withNodeSelector("nvl-b"))
	waitForBinding(t, cp, "holder-a")
	waitForBinding(t, cp, "holder-b")
	if _, held := waitForClaimAllocation(t, cp, "holder-a-gpus", "holder-a"); !slices.Equal(held, []string{"nvl-a/gpu-0"}) {
		t.Fatalf("holder-a-gpus got %v, want nvl-a/gpu-0 (the allocator's first fit)", held)
	}
	if _, held := waitForClaimAllocation(t, cp, "holder-b-gpus", "holder-b"); !slices.Equal(held, []string{"nvl-b/gpu-0", "nvl-b/gpu-1"}) {
		t.Fatalf("holder-b-gpus got %v, want nvl-b/gpu-0 and gpu-1 (the allocator's first fit)", held)
	}

	for i, pair := range [][]string{{"nvl-b/gpu-2", "nvl-b/gpu-3"}, {"nvl-b/gpu-4", "nvl-b/gpu-5"}, {"nvl-b/gpu-6", "nvl-b/gpu-7"}} {
		pod := fmt.Sprintf("tp2-%d", i)
		createPod(t, cp, pod, 0, withGPUClaim(t, cp, 2))
		if node := waitForBinding(t, cp, pod); node != "nvl-b" {
			t.Fatalf("%s bound to %s, want nvl-b, where the allocator's pick is an NVLink pair; events: %s", pod, node, eventsFor(cp, pod))
		}
		if _, devices := waitForClaimAllocation(t, cp, pod+"-gpus", pod); !slices.Equal(devices, pair) {
			t.Fatalf("%s's claim got %v, want the pair %v", pod, devices, pair)
		}
	}
	createPod(t, cp, "tp2-3", 0, withGPUClaim(t, cp, 2))
	waitForFailedScheduling(t, cp, "tp2-3", "the DRA allocator takes the first free GPUs in its ResourceSlice's order, [1 2], which span 2 NVLink islands")
}

// A P/D unit of DRA pods goes where the allocator's pick keeps each claim
// on one NVLink pair. nvl-a has three whole pairs free, but with GPU 0 held
// the allocator would give a TP=2 claim GPUs 1 and 2; nvl-b and nvl-c have
// one pair each (6-7). A 1P1D unit of TP=2 engines lands on nvl-b and
// nvl-c, each claim allocated that pair, with no failed attempt (the
// planner's part is TestPlanFollowsTheAllocatorsOrder in pkg/topology).
func TestDRAUnitIsPlannedByTheAllocatorsPick(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: nvl-a, shape: h100-nvl, zone: z1, spine: s1, leaf: l1, gpuAllocation: dra}
- {name: nvl-b, shape: h100-nvl, zone: z1, spine: s1, leaf: l1, gpuAllocation: dra}
- {name: nvl-c, shape: h100-nvl, zone: z1, spine: s1, leaf: l1, gpuAllocation: dra}
`)
	anyIslands := func(p *v1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[nvlinktopo.AnnotationIslandPolicy] = string(topology.IslandIgnore)
	}
	for node, gpus := range map[string]int64{"nvl-a": 1, "nvl-b": 6, "nvl-c": 6} {
		createPod(t, cp, "holder-"+node, 0, withGPUClaim(t, cp, gpus), withNodeSelector(node), anyIslands)
	}
	for _, node := range []string{"nvl-a", "nvl-b", "nvl-c"} {
		waitForBinding(t, cp, "holder-"+node)
		waitForClaimAllocation(t, cp, "holder-"+node+"-gpus", "holder-"+node)
	}
	unit := withLabels(pdaffinity.LabelGroup, "u", pdaffinity.LabelUnitSize, "2")
	createPod(t, cp, "u-prefill-0", 0, withGPUClaim(t, cp, 2), withLabels(pdaffinity.LabelRole, "prefill"), unit)
	createPod(t, cp, "u-decode-0", 0, withGPUClaim(t, cp, 2), withLabels(pdaffinity.LabelRole, "decode"), unit)
	nodes := map[string]bool{}
	for _, pod := range []string{"u-prefill-0", "u-decode-0"} {
		node := waitForBinding(t, cp, pod)
		nodes[node] = true
		if _, devices := waitForClaimAllocation(t, cp, pod+"-gpus", pod); !slices.Equal(devices, []string{node + "/gpu-6", node + "/gpu-7"}) {
			t.Errorf("%s's claim got %v on %s, want the pair gpu-6, gpu-7", pod, devices, node)
		}
		if events, err := listEvents(context.Background(), cp, pod); err != nil {
			t.Fatal(err)
		} else if i := slices.IndexFunc(events, func(e v1.Event) bool { return e.Reason == "FailedScheduling" }); i >= 0 {
			t.Errorf("%s failed an attempt before it was placed: %s", pod, events[i].Message)
		}
	}
	if !nodes["nvl-b"] || !nodes["nvl-c"] {
		t.Errorf("unit placed on %v, want nvl-b and nvl-c", nodes)
	}
}
