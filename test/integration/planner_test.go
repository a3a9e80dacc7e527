package integration

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// decodeClasses is, for each decode of pods, the path class from its
// nearest prefill, judged by the model's classifier on the nodes' labels.
func decodeClasses(t *testing.T, cp *controlplane.ControlPlane, placed map[string]map[string]string) map[topology.PathClass]int {
	t.Helper()
	levels := topology.DefaultLevels()
	model := topology.DefaultCostModel()
	out := map[topology.PathClass]int{}
	for d, dl := range placed {
		if !strings.Contains(d, "-decode-") {
			continue
		}
		best := topology.PathNone
		for p, pl := range placed {
			if !strings.Contains(p, "-prefill-") {
				continue
			}
			c := levels.Classify(levels.PathOf(pl), levels.PathOf(dl), topology.GPUDirectRDMAReady(pl), topology.GPUDirectRDMAReady(dl))
			if p != d && model.Bandwidth(c) > model.Bandwidth(best) {
				best = c
			}
		}
		out[best]++
	}
	return out
}

func TestUnitTakesAWholeFreeLeafOverPartlyUsedOnes(t *testing.T) {
	// l1 and l2 have 16 GPUs free each, four per board; l3 has two whole
	// boards. A 2P2D unit of TP=4 engines pairs on NVLink only in l3.
	cp := startCluster(t, `
nodes:
- {name: l1, count: 4, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3]}
- {name: l2, count: 4, shape: hgx-h100, zone: z1, spine: s1, leaf: l2, allocatedGPUs: [4, 5, 6, 7]}
- {name: l3, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: l3}
`)
	createPodGroup(t, cp, "u", 4, 0)
	placed := placements(t, cp, createUnit(t, cp, "u", 2, 2, 4, withLabels(pdaffinity.LabelPodGroup, "u")))
	if l := distinct(placed, topology.LabelLeaf); len(l) != 1 || !l["l3/"] {
		t.Errorf("unit placed on leaves %v, want the whole free leaf l3", l)
	}
	if c := decodeClasses(t, cp, placed); c[topology.LevelNVLinkDomain] != 2 {
		t.Errorf("decode path classes %v, want both on NVLink with a prefill", c)
	}
}

func TestMixedSizeUnitSharesOneBoard(t *testing.T) {
	// Three boards with 3 GPUs free each and one whole board: two TP=2
	// prefills and a TP=4 decode fit only the whole one together.
	cp := startCluster(t, `
nodes:
- {name: used, count: 3, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3, 4]}
- {name: free, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	createPodGroup(t, cp, "mixed", 3, 0)
	pods := []string{"mixed-prefill-0", "mixed-prefill-1", "mixed-decode-0"}
	for i, name := range pods {
		gpus := int64(2)
		role := "prefill"
		if i == 2 {
			gpus, role = 4, "decode"
		}
		createPod(t, cp, name, gpus, withLabels(pdaffinity.LabelRole, role, pdaffinity.LabelGroup, "mixed", pdaffinity.LabelPodGroup, "mixed"))
	}
	for _, p := range pods {
		if node := waitForBinding(t, cp, p); node != "free" {
			t.Errorf("pod %s bound to %s, want the whole board free", p, node)
		}
	}
}

func TestRackUnderTwoLeavesIsOneNVLinkDomain(t *testing.T) {
	// One NVL72 rack's trays hang off leaves l1 and l2; leaf l3 has two
	// HGX boards. A 1P3D unit of TP=4 engines (16 GPUs) has every decode on
	// NVLink with its prefill only in the rack.
	cp := startCluster(t, `
nodes:
- {name: r1-a, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l1, nvlinkDomain: rack1}
- {name: r1-b, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l2, nvlinkDomain: rack1}
- {name: hgx, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l3}
`)
	createPodGroup(t, cp, "r", 4, 0)
	placed := placements(t, cp, createUnit(t, cp, "r", 1, 3, 4, withLabels(pdaffinity.LabelPodGroup, "r")))
	if d := distinct(placed, topology.LabelNVLinkDomain); len(d) != 1 || !d["rack1/"] {
		t.Errorf("unit placed in NVLink domains %v, want rack1", d)
	}
	if l := distinct(placed, topology.LabelLeaf); len(l) != 2 {
		t.Errorf("unit on leaves %v: the rack's two leaves were expected", l)
	}
	if c := decodeClasses(t, cp, placed); c[topology.LevelNVLinkDomain] != 3 {
		t.Errorf("decode path classes %v, want all three on NVLink", c)
	}
}

func TestPlannedNodeTakenMeanwhileIsNotAStuckPod(t *testing.T) {
	// A 1P1D unit without a gang: the decode exists but waits behind a
	// scheduling gate while its prefill is placed, so the unit's plan puts
	// both on one board. Then another tenant takes the rest of that board.
	cp := startCluster(t, `
nodes:
- {name: gpu, count: 3, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	gate := func(p *v1.Pod) { p.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "example.com/hold"}} }
	unit := withLabels(pdaffinity.LabelUnitSize, "2")
	createPod(t, cp, "u-decode-0", 4, withLabels(pdaffinity.LabelRole, "decode", pdaffinity.LabelGroup, "u"), unit, gate)
	createPod(t, cp, "u-prefill-0", 4, withLabels(pdaffinity.LabelRole, "prefill", pdaffinity.LabelGroup, "u"), unit)
	planned := waitForBinding(t, cp, "u-prefill-0")

	ctx := context.Background()
	nt, err := cp.Tandem.TandemV1alpha1().NodeTopologies().Get(ctx, planned, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, g := range nt.Status.GPUs {
		all = append(all, g.UUID)
	}
	nt.Status.GPUAllocations = append(nt.Status.GPUAllocations, topologyv1alpha1.GPUAllocation{Pod: "other/tenant", GPUs: all})
	if _, err := cp.Tandem.TandemV1alpha1().NodeTopologies().UpdateStatus(ctx, nt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The scheduler reads NodeTopology and pods through separate watches,
	// so the decode could be ungated before the report arrives, and would
	// rightly take the board's last four GPUs. A probe pinned to the board
	// settles that first: either the scheduler has the report and refuses
	// it, or the probe takes those GPUs itself. Either way the board is
	// taken when the decode comes.
	createPod(t, cp, "probe", 4, withNodeSelector(planned))
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, "probe", metav1.GetOptions{})
		if err != nil || p.Spec.NodeName != "" {
			return err == nil, err
		}
		events, err := listEvents(ctx, cp, "probe")
		return slices.ContainsFunc(events, func(e v1.Event) bool {
			return e.Reason == "FailedScheduling" && strings.Contains(e.Message, "0 of 8 GPUs free")
		}), err
	}); err != nil {
		t.Fatalf("the probe on %s was neither bound nor refused for the tenant's GPUs: %v; events: %s", planned, err, eventsFor(cp, "probe"))
	}
	pod, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, "u-decode-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Spec.SchedulingGates = nil
	if _, err := cp.Client.CoreV1().Pods(namespace).Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	node := waitForBinding(t, cp, "u-decode-0")
	if node == planned {
		t.Fatalf("decode bound to %s, whose GPUs another tenant holds", node)
	}
	if l := nodeLabels(t, cp, node)[topology.LabelLeaf]; l != "l1" {
		t.Errorf("decode bound on leaf %q", l)
	}
}

func TestPodsThatNeedNoTopologyBindWithSeveralFeasibleNodes(t *testing.T) {
	// Three nodes, none with a usable NodeTopology: a pod without GPUs and
	// a plain 1-GPU pod have several feasible nodes, so Score runs, and
	// Reserve must agree with Filter that they need no topology.
	cp := startCluster(t, `
nodes:
- {name: missing, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, topology: missing}
- {name: stale, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, topology: stale}
`)
	createPod(t, cp, "router", 0)
	createPod(t, cp, "one-gpu", 1)
	waitForBinding(t, cp, "router")
	waitForBinding(t, cp, "one-gpu")
}

func TestSchedulerRestartMidUnitLeavesNoHalfPlacedUnit(t *testing.T) {
	cp := createCluster(t, `
nodes:
- {name: gpu, count: 4, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	ctx := context.Background()
	stop, err := cp.StartStoppableScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}, controlplane.SchedulerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A 2P2D unit whose last decode fits no node until a node is labelled
	// for it: the first three pods are placed and wait in Permit for it.
	createPodGroup(t, cp, "u", 4, 0)
	pods := createUnit(t, cp, "u", 2, 1, 4, withLabels(pdaffinity.LabelPodGroup, "u"))
	last := createPod(t, cp, "u-decode-1", 4, withLabels(pdaffinity.LabelRole, "decode", pdaffinity.LabelGroup, "u", pdaffinity.LabelPodGroup, "u"),
		func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"example.com/ready": "true"} })
	pods = append(pods, last.Name)
	waitForFailedScheduling(t, cp, last.Name)
	time.Sleep(2 * time.Second)
	stop()
	requireNoneBound := func(stage string) {
		t.Helper()
		for _, p := range pods {
			pod, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, p, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pod.Spec.NodeName != "" {
				t.Fatalf("%s: pod %s of a unit that is not whole was bound to %s", stage, p, pod.Spec.NodeName)
			}
		}
	}
	requireNoneBound("after the stop")

	// A new scheduler starts from nothing but what the cluster says.
	if _, err := cp.StartStoppableScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}, controlplane.SchedulerOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	requireNoneBound("after the restart")
	node, err := cp.Client.CoreV1().Nodes().Get(ctx, "gpu-3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Labels["example.com/ready"] = "true"
	if _, err := cp.Client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	placed := placements(t, cp, pods)
	// No two of the unit's pods got the same GPUs: four TP=4 engines on
	// 8-GPU boards, at most two per board.
	perNode := map[string]int{}
	for _, p := range pods {
		pod, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, p, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		perNode[pod.Spec.NodeName]++
	}
	for n, c := range perNode {
		if c > 2 {
			t.Errorf("node %s holds %d TP=4 engines on 8 GPUs", n, c)
		}
	}
	if len(placed) != len(pods) {
		t.Errorf("%d of %d pods placed", len(placed), len(pods))
	}
}
