package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclient "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// fabric is two spines of four leaves: two HGX H100 nodes per leaf (16
// GPUs), except one leaf that holds a GB200 NVL72 rack of four trays (16
// GPUs on one NVLink domain).
const fabric = `
nodes:
- {name: s1-l1, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l1}
- {name: s1-l2, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l2}
- {name: s1-l3, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l3}
- {name: s1-l4, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l4}
- {name: s2-l1-tray, count: 4, shape: gb200-tray, zone: z1, spine: s2, leaf: s2-l1, nvlinkDomain: nvl72-r1}
- {name: s2-l2, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: s2-l2}
- {name: s2-l3, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: s2-l3}
- {name: s2-l4, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: s2-l4}
`

func createPodGroup(t *testing.T, cp *controlplane.ControlPlane, name string, minMember int32, minGPUs int64) {
	t.Helper()
	client := pgclient.NewForConfigOrDie(controlplane.JSONConfig(cp.Config))
	pg := &schedulingv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       schedulingv1alpha1.PodGroupSpec{MinMember: minMember},
	}
	if minGPUs > 0 {
		pg.Spec.MinResources = v1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(minGPUs, resource.DecimalSI)}
	}
	if _, err := client.SchedulingV1alpha1().PodGroups(namespace).Create(context.Background(), pg, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating PodGroup %s: %v", name, err)
	}
}

// createUnit creates an xPyD unit of TP=gpus engines in a PodGroup and
// returns the pod names.
func createUnit(t *testing.T, cp *controlplane.ControlPlane, unit string, prefills, decodes int, gpus int64, opts ...podOption) []string {
	t.Helper()
	var names []string
	for i := 0; i < prefills+decodes; i++ {
		role, n := "prefill", i
		if i >= prefills {
			role, n = "decode", i-prefills
		}
		name := fmt.Sprintf("%s-%s-%d", unit, role, n)
		createPod(t, cp, name, gpus, append([]podOption{withLabels(pdaffinity.LabelRole, role, pdaffinity.LabelGroup, unit)}, opts...)...)
		names = append(names, name)
	}
	return names
}

func nodeLabels(t *testing.T, cp *controlplane.ControlPlane, node string) map[string]string {
	t.Helper()
	n, err := cp.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Labels
}

// placements binds every pod and returns pod -> node labels.
func placements(t *testing.T, cp *controlplane.ControlPlane, pods []string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, p := range pods {
		node := waitForBinding(t, cp, p)
		out[p] = nodeLabels(t, cp, node)
		out[p][v1.LabelHostname] = node
	}
	return out
}

func distinct(placed map[string]map[string]string, keys ...string) map[string]bool {
	out := map[string]bool{}
	for _, l := range placed {
		v := ""
		for _, k := range keys {
			v += l[k] + "/"
		}
		out[v] = true
	}
	return out
}

func TestUnitLandsInOneNVLinkDomainOrLeaf(t *testing.T) {
	cp := startCluster(t, fabric)
	createPodGroup(t, cp, "unit-a", 4, 0)
	pods := createUnit(t, cp, "unit-a", 2, 2, 4, withLabels(pdaffinity.LabelPodGroup, "unit-a"))
	placed := placements(t, cp, pods)
	domains := distinct(placed, topology.LabelNVLinkDomain)
	leaves := distinct(placed, topology.LabelSpine, topology.LabelLeaf)
	if len(domains) != 1 && len(leaves) != 1 {
		t.Fatalf("2P2D unit spread over NVLink domains %v and leaves %v", domains, leaves)
	}
	// 16 GPUs fit the NVL72 rack's one NVLink domain, which beats a leaf.
	if !domains["nvl72-r1/"] {
		t.Errorf("2P2D unit placed in %v, want the NVL72 rack nvl72-r1", domains)
	}

	// Every bound pod carries its placement for routers, from the moment
	// it is bound.
	for _, name := range pods {
		pod, err := cp.Client.CoreV1().Pods(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l := placed[name]
		want := fmt.Sprintf("zone=%s,spine=%s,leaf=%s,nvlink-domain=%s,node=%s",
			l[topology.LabelZone], l[topology.LabelSpine], l[topology.LabelLeaf], l[topology.LabelNVLinkDomain], pod.Spec.NodeName)
		if got := pod.Annotations[pdaffinity.AnnotationPlacement]; got != want {
			t.Errorf("pod %s placement %q, want %q", name, got, want)
		}
		// The annotation came with the binding: no second write stamped
		// labels (placementLabels is off as shipped).
		if got := podLabel(t, cp, name, topology.LabelLeaf); got != "" {
			t.Errorf("pod %s has label %s=%q; placementLabels is off", name, topology.LabelLeaf, got)
		}
	}

	// A 1P1D unit of TP=4 engines fits one HGX node: one NVLink domain.
	createPodGroup(t, cp, "unit-b", 2, 0)
	placed = placements(t, cp, createUnit(t, cp, "unit-b", 1, 1, 4, withLabels(pdaffinity.LabelPodGroup, "unit-b")))
	if d := distinct(placed, topology.LabelNVLinkDomain); len(d) != 1 {
		t.Errorf("1P1D unit spread over NVLink domains %v", d)
	}
}

func TestUnitTooBigForALeafStaysUnderOneSpine(t *testing.T) {
	cp := startCluster(t, fabric)
	// 4P4D of TP=4 engines needs 32 GPUs; a leaf has 16.
	createPodGroup(t, cp, "big", 8, 0)
	placed := placements(t, cp, createUnit(t, cp, "big", 4, 4, 4, withLabels(pdaffinity.LabelPodGroup, "big")))
	if s := distinct(placed, topology.LabelSpine); len(s) != 1 {
		t.Errorf("4P4D unit spread over spines %v", s)
	}
	if l := distinct(placed, topology.LabelSpine, topology.LabelLeaf); len(l) != 2 {
		t.Errorf("4P4D unit of 32 GPUs used leaves %v, want the two it needs", l)
	}
}

func TestUnitThatFitsNowhereStaysPendingWhole(t *testing.T) {
	cp := startCluster(t, fabric)
	// 8P8D of TP=8 engines needs 128 GPUs, and a small pod already holds one.
	createPod(t, cp, "squatter", 1)
	waitForBinding(t, cp, "squatter")
	createPodGroup(t, cp, "huge", 16, 128)
	pods := createUnit(t, cp, "huge", 8, 8, 8, withLabels(pdaffinity.LabelPodGroup, "huge"))
	waitForFailedScheduling(t, cp, pods[0])
	// No member binds, and none holds GPUs: a small pod still finds room
	// everywhere it would have.
	createPod(t, cp, "after", 8)
	waitForBinding(t, cp, "after")
	for _, p := range pods {
		pod, err := cp.Client.CoreV1().Pods(namespace).Get(context.Background(), p, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName != "" {
			t.Errorf("member %s of a unit that cannot fit was bound to %s", p, pod.Spec.NodeName)
		}
	}
}

func TestRequiredLevelPodStaysPendingWithReason(t *testing.T) {
	cp := startCluster(t, fabric)
	// A 2P2D unit of TP=8 engines needs 32 GPUs in one leaf; no leaf has them.
	pods := createUnit(t, cp, "strict", 2, 2, 8,
		withLabels(pdaffinity.LabelUnitSize, "4"),
		withAnnotations(pdaffinity.AnnotationRequiredLevel, topology.LevelLeaf))
	waitForFailedScheduling(t, cp, pods[0], "leaf has too few free GPUs: unit strict needs 32 in one leaf (tandem.dev/required-level=leaf)")

	createPod(t, cp, "typo", 1, withLabels(pdaffinity.LabelRole, "decode", pdaffinity.LabelGroup, "strict"),
		withAnnotations(pdaffinity.AnnotationRequiredLevel, "rack"))
	waitForFailedScheduling(t, cp, "typo", `pod annotation tandem.dev/required-level="rack" is not a topology level; levels are zone, spine, leaf, nvlink-domain`)
}

func TestPoolKeepsEachLeafNearItsRatio(t *testing.T) {
	cp := startCluster(t, fabric)
	pool := func(role string, i int) string {
		name := fmt.Sprintf("pool-%s-%d", role, i)
		createPod(t, cp, name, 4, withLabels(pdaffinity.LabelRole, role, pdaffinity.LabelGroup, "chat"))
		return name
	}
	var pods []string
	check := func(stage string) {
		t.Helper()
		counts := map[string]*[2]int{}
		for _, p := range pods {
			l := nodeLabels(t, cp, waitForBinding(t, cp, p))
			leaf := l[topology.LabelSpine] + "/" + l[topology.LabelLeaf]
			if counts[leaf] == nil {
				counts[leaf] = &[2]int{}
			}
			slot := 1
			if podLabel(t, cp, p, pdaffinity.LabelRole) == "prefill" {
				slot = 0
			}
			counts[leaf][slot]++
		}
		for leaf, c := range counts {
			if d := c[0] - c[1]; d > 1 || d < -1 {
				t.Errorf("%s: leaf %s holds %d prefill and %d decode, want 1:1 within one pod", stage, leaf, c[0], c[1])
			}
		}
	}
	// Scale up in pairs.
	for i := 0; i < 3; i++ {
		pods = append(pods, pool("prefill", i))
		waitForBinding(t, cp, pods[len(pods)-1])
		pods = append(pods, pool("decode", i))
		waitForBinding(t, cp, pods[len(pods)-1])
	}
	check("after scaling up")
	// Scale the decode pool down by one, then up again: the new decode
	// goes where a prefill lost its partner.
	gone := pods[len(pods)-1]
	if err := cp.Client.CoreV1().Pods(namespace).Delete(context.Background(), gone, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	pods = pods[:len(pods)-1]
	waitForDeletion(t, cp, gone)
	pods = append(pods, pool("decode", 3))
	check("after replacing a decode")
}

func podLabel(t *testing.T, cp *controlplane.ControlPlane, pod, key string) string {
	t.Helper()
	p, err := cp.Client.CoreV1().Pods(namespace).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Labels[key]
}

func waitForDeletion(t *testing.T, cp *controlplane.ControlPlane, pod string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if _, err := cp.Client.CoreV1().Pods(namespace).Get(context.Background(), pod, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pod %s was not deleted", pod)
}
