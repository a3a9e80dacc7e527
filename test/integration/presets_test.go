package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// partlyUsed is 16 HGX H100 nodes on 8 leaves under 2 spines; another
// tenant holds half the GPUs of every node but the first leaf's, so a TP=4
// prefill and its decode share a node only there and a leaf elsewhere.
const partlyUsed = `
nodes:
- {name: s1-l1, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l1}
- {name: s1-l2, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l2, allocatedGPUs: [0, 1, 2, 3]}
- {name: s1-l3, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l3, allocatedGPUs: [4, 5, 6, 7]}
- {name: s1-l4, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: s1-l4, allocatedGPUs: [0, 1, 2, 3]}
- {name: s2-l1, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: s2-l1, allocatedGPUs: [0, 1, 2, 3]}
- {name: s2-l2, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: s2-l2, allocatedGPUs: [4, 5, 6, 7]}
- {name: s2-l3, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: s2-l3, allocatedGPUs: [0, 1, 2, 3]}
- {name: s2-l4, count: 2, shape: hgx-h100, zone: z1, spine: s2, leaf: s2-l4, allocatedGPUs: [4, 5, 6, 7]}
`

// startPartlyUsedCluster is startCluster with the other tenant's holder
// pods created, so that every plugin sees the held GPUs, and no scheduler
// yet.
func startPartlyUsedCluster(t *testing.T) *controlplane.ControlPlane {
	t.Helper()
	desc, err := clusterdesc.Parse([]byte(partlyUsed))
	if err != nil {
		t.Fatal(err)
	}
	cp := controlplane.StartControlPlane(t)
	built := desc.Build(time.Now())
	if err := clusterdesc.Create(context.Background(), cp.Client, cp.Tandem, built); err != nil {
		t.Fatal(err)
	}
	if err := clusterdesc.CreateHolders(context.Background(), cp.Client, built); err != nil {
		t.Fatal(err)
	}
	return cp
}

// stackPod is one engine pod of a serving stack: its labels exactly as the
// stack sets them, and which of them carry the role and the group.
type stackPod struct {
	name     string
	prefill  bool
	pairWith string // the pods it is paired with: its slice, or its pool
	labels   map[string]string
}

// pairClass is how far apart two nodes are: 0 one NVLink domain, 1 one
// leaf, 2 one spine, 3 further.
func pairClass(a, b map[string]string) int {
	switch {
	case a[topology.LabelNVLinkDomain] != "" && a[topology.LabelNVLinkDomain] == b[topology.LabelNVLinkDomain]:
		return 0
	case a[topology.LabelLeaf] == b[topology.LabelLeaf]:
		return 1
	case a[topology.LabelSpine] == b[topology.LabelSpine]:
		return 2
	}
	return 3
}

// runStack creates the PodGroups (name to minMember) and the pods with their
// labels, less the stripped keys, on a fresh partly used cluster, waits for
// every one to bind, and returns the mean over decodes of the pair class to
// the nearest prefill it pairs with.
func runStack(t *testing.T, pods []stackPod, strip []string, podGroups map[string]int32) float64 {
	t.Helper()
	cp := startPartlyUsedCluster(t)
	for name, minMember := range podGroups {
		createPodGroup(t, cp, name, minMember, 0)
	}
	for _, p := range pods {
		var kv []string
		for k, v := range p.labels {
			if !contains(strip, k) {
				kv = append(kv, k, v)
			}
		}
		createPod(t, cp, p.name, 4, withLabels(kv...))
	}
	// Every pod exists before the scheduler starts, so that the comparison
	// is of the grouping alone: a slice with no PodGroup or unit-size label
	// is sized by the pods that exist when its first pod is planned.
	if err := cp.StartScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}); err != nil {
		t.Fatalf("starting the scheduler: %v", err)
	}
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.name
	}
	placed := placements(t, cp, names) // fails on any pod left pending
	sum, n := 0, 0
	for _, d := range pods {
		if d.prefill {
			continue
		}
		best := 4
		for _, p := range pods {
			if p.prefill && p.pairWith == d.pairWith {
				best = min(best, pairClass(placed[d.name], placed[p.name]))
			}
		}
		sum += best
		n++
	}
	return float64(sum) / float64(n)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// comparePlacement runs the stack's pods with their labels and with the
// role and group labels stripped, and wants better pairs with them.
func comparePlacement(t *testing.T, pods []stackPod, strip []string) {
	t.Helper()
	comparePlacementWithGroups(t, pods, strip, nil)
}

// comparePlacementWithGroups is comparePlacement with PodGroups the stack
// creates, in both runs; it returns the mean pair class with the labels.
func comparePlacementWithGroups(t *testing.T, pods []stackPod, strip []string, podGroups map[string]int32) float64 {
	t.Helper()
	var labelled, stripped float64
	t.Run("labelled", func(t *testing.T) { labelled = runStack(t, pods, nil, podGroups) })
	t.Run("stripped", func(t *testing.T) { stripped = runStack(t, pods, strip, podGroups) })
	t.Logf("mean pair class (0 NVLink domain, 1 leaf, 2 spine, 3 zone): %.2f with the stack's labels, %.2f stripped; 0 pending", labelled, stripped)
	if t.Failed() {
		return labelled
	}
	if labelled >= stripped {
		t.Errorf("mean pair class %.2f with the stack's labels, %.2f without: no better", labelled, stripped)
	}
	if labelled > 1 {
		t.Errorf("mean pair class %.2f with the stack's labels, want every pair within a leaf", labelled)
	}
	return labelled
}

// fourPairsOptimum is the best mean pair class of four TP=4 prefill→decode
// pairs on partlyUsed: the two free nodes of s1-l1 hold one pair each on
// NVLink, every other node has room for one TP=4 engine, so the other two
// pairs span a leaf.
const fourPairsOptimum = 0.5

// wantOptimum fails unless the labelled placement reached the optimum.
func wantOptimum(t *testing.T, labelled float64) {
	t.Helper()
	if !t.Failed() && labelled > fourPairsOptimum {
		t.Errorf("mean pair class %.2f with the stack's labels, want the optimum %.2f", labelled, fourPairsOptimum)
	}
}

// llm-d's guide runs llm-d pods on an LWS DisaggregatedSet: each pod
// carries llm-d's role and model and the set's name, role and slice. The
// slice, the finest grouping, is the unit; the model spans every slice.
func TestLLMDOnLWSPairsWithinTheSlice(t *testing.T) {
	// Each slice's LeaderWorkerSets are named with a hash, so the pods of
	// one slice do not sort beside each other: by name, prefills come in
	// slice order 2, 3, 0, 1 and decodes 1, 3, 0, 2.
	hashes := map[string][]string{
		"prefill": {"6c1f", "9a0d", "1b7e", "3e52"},
		"decode":  {"8d21", "0f4a", "c93b", "5b06"},
	}
	pod := func(slice int, role string) stackPod {
		s := fmt.Sprint(slice)
		return stackPod{
			name: fmt.Sprintf("ds-%s-%s-0", role, hashes[role][slice]), prefill: role == "prefill", pairWith: s,
			labels: map[string]string{
				"llm-d.ai/role": role, "llm-d.ai/model": "llama-3-70b", "llm-d.ai/inference-serving": "true",
				"disaggregatedset.x-k8s.io/name": "ds", "disaggregatedset.x-k8s.io/role": role,
				"disaggregatedset.x-k8s.io/slice":  s,
				"leaderworkerset.sigs.k8s.io/name": fmt.Sprintf("ds-%d-%s", slice, role), "leaderworkerset.sigs.k8s.io/worker-index": "0",
			},
		}
	}
	// The set creates one LeaderWorkerSet per slice and role, in no order
	// that pairs them: every prefill first, then the decodes, last slice
	// first. Grouped by the model, a decode pairs with whichever prefill is
	// near, not its slice's.
	var pods []stackPod
	for slice := range 4 {
		pods = append(pods, pod(slice, "prefill"))
	}
	for slice := 3; slice >= 0; slice-- {
		pods = append(pods, pod(slice, "decode"))
	}
	comparePlacement(t, pods, []string{"llm-d.ai/role", "llm-d.ai/model", "disaggregatedset.x-k8s.io/role", "disaggregatedset.x-k8s.io/name"})
}

// The llm-d-modelservice chart sets llm-d.ai/role but not llm-d.ai/model:
// the pods pair within the namespace, as llm-d's router pairs them within
// its pool, rather than staying pending.
func TestLLMDWithoutModelPairsWithinTheNamespace(t *testing.T) {
	var pods []stackPod
	for i := range 4 {
		for _, role := range []string{"prefill", "decode"} {
			pods = append(pods, stackPod{
				name: fmt.Sprintf("ms-llama-%s-%d", role, i), prefill: role == "prefill", pairWith: "pool",
				labels: map[string]string{"llm-d.ai/role": role, "llm-d.ai/inference-serving": "true", "app": "ms-llama"},
			})
		}
	}
	comparePlacement(t, pods, []string{"llm-d.ai/role"})
}
