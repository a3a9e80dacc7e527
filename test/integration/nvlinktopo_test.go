package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/plugins/nvlinktopo"
)

func withAnnotations(kv ...string) podOption {
	return func(p *v1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func TestTensorParallelPodGetsOneNVLinkIsland(t *testing.T) {
	// The L40S node has eight free GPUs and no NVLink; the HGX node has four
	// free, all on its NVSwitch island.
	cp := startCluster(t, `
nodes:
- {name: pcie, shape: l40s}
- {name: hgx, shape: hgx-h100, allocatedGPUs: [0, 1, 2, 3]}
`)
	createPod(t, cp, "tp4", 4)
	if node := waitForBinding(t, cp, "tp4"); node != "hgx" {
		t.Errorf("TP=4 pod bound to %s, want hgx", node)
	}
	// A second TP=4 pod has no island left anywhere; it names the reason.
	createPod(t, cp, "tp4-more", 4)
	waitForFailedScheduling(t, cp, "tp4-more", "no NVLink island has 4 free GPUs")
	// Without the island requirement it may use the PCIe node.
	createPod(t, cp, "tp4-any", 4, withAnnotations(nvlinktopo.AnnotationIslandPolicy, "Ignore"))
	if node := waitForBinding(t, cp, "tp4-any"); node != "pcie" {
		t.Errorf("TP=4 pod without an island requirement bound to %s, want pcie", node)
	}
}

func TestRDMAPodAvoidsFarNICsAndBrokenGPUDirect(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: far-nic, shape: hgx-h100-sys-nic}
- {name: acs-on, shape: hgx-h100, gpuDirectBroken: true}
- {name: good, shape: hgx-h100}
`)
	createPod(t, cp, "kv-sender", 8, withAnnotations(nvlinktopo.AnnotationRDMA, "true"))
	if node := waitForBinding(t, cp, "kv-sender"); node != "good" {
		t.Errorf("RDMA pod bound to %s, want good", node)
	}
	// With "good" full, the next RDMA pod stays pending and says why for
	// each node, rather than landing where GPUDirect RDMA cannot work.
	createPod(t, cp, "kv-sender-2", 8, withAnnotations(nvlinktopo.AnnotationRDMA, "true"))
	waitForFailedScheduling(t, cp, "kv-sender-2",
		"only 0 free GPUs have an active NIC at PXB or nearer", "GPUDirect RDMA check acs: Fail ACSRedirectEnabled")
	// A pod that moves nothing over RDMA may use either.
	createPod(t, cp, "local", 8)
	if node := waitForBinding(t, cp, "local"); node == "good" {
		t.Errorf("pod bound to the full node %s", node)
	}
}

func TestPodsRacingForTheLastIslandNeverShareIt(t *testing.T) {
	// Three of the four NVLink pairs are held by another tenant, as the
	// agent reports; the scheduler's own ledger must keep the last pair from
	// being promised twice, although the report shows it free until the
	// kubelet catches up.
	cp := startCluster(t, `
nodes:
- {name: nvl, shape: h100-nvl, allocatedGPUs: [0, 1, 2, 3, 4, 5]}
`)
	var wg sync.WaitGroup
	for _, name := range []string{"racer-a", "racer-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			createPod(t, cp, name, 2)
		}()
	}
	wg.Wait()
	var bound, pending []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		bound, pending = nil, nil
		for _, name := range []string{"racer-a", "racer-b"} {
			pod, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if pod.Spec.NodeName != "" {
				bound = append(bound, name)
			} else if hasUnschedulableCondition(pod) {
				pending = append(pending, name)
			}
		}
		return len(bound)+len(pending) == 2, nil
	})
	if err != nil {
		t.Fatalf("racers did not settle: bound %v, pending %v", bound, pending)
	}
	if len(bound) != 1 {
		t.Fatalf("bound %v, want exactly one racer on the last pair", bound)
	}
	waitForFailedScheduling(t, cp, pending[0], "0 of 8 GPUs free, pod needs 2")
}

func hasUnschedulableCondition(pod *v1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

func TestMalformedNVLinkAnnotationIsReported(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: hgx, shape: hgx-h100}
`)
	createPod(t, cp, "bad", 2, withAnnotations(nvlinktopo.AnnotationIslandPolicy, "Sometimes"))
	waitForFailedScheduling(t, cp, "bad", `pod annotation tandem.dev/nvlink-island="Sometimes" is not one of Required, Preferred, Ignore`)
}

// A two-socket node whose far GPUs cannot use the NIC: the agent's report
// says the node is not GPUDirect-ready but GPUs 0-3 are, and the CRD takes
// it. An RDMA pod needing 4 GPUs is placed there; one needing 8 is not.
func TestRDMAPodUsesTheReadyGPUsOfATwoSocketNode(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: two-socket, shape: hgx-h100}
`)
	ctx := context.Background()
	client := cp.Tandem.TandemV1alpha1().NodeTopologies()
	nt, err := client.Get(ctx, "two-socket", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := &nt.Status.GPUDirectRDMA
	g.Ready = false
	g.Checks = []topologyv1alpha1.GPUDirectCheck{
		{Name: "devices", Result: topologyv1alpha1.CheckPass, Reason: "GPUsAndNICsFound"},
		{Name: "pcie-path", Result: topologyv1alpha1.CheckFail, Reason: "NICAcrossHostBridge"},
	}
	g.GPUs = nil
	for _, gpu := range nt.Status.GPUs {
		r := topologyv1alpha1.GPUDirectGPU{GPU: gpu.Index, Ready: gpu.Index < 4, NICs: []string{nt.Status.NICs[0].Name}}
		if !r.Ready {
			r.BlockingChecks = []string{"pcie-path"}
		}
		g.GPUs = append(g.GPUs, r)
	}
	nt.Status.LastHeartbeatTime = metav1.Now()
	if nt, err = client.UpdateStatus(ctx, nt, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the agent's per-GPU report was rejected: %v", err)
	}
	// The CRD refuses a GPU both ready and blocked, and a node ready with a
	// GPU that has NICs not ready.
	bad := nt.DeepCopy()
	bad.Status.GPUDirectRDMA.GPUs[5].Ready = true
	if _, err := client.UpdateStatus(ctx, bad, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "ready must be true exactly when no check blocks the GPU") {
		t.Errorf("a ready GPU with blocking checks: %v", err)
	}
	bad = nt.DeepCopy()
	bad.Status.GPUDirectRDMA.Ready, bad.Status.GPUDirectRDMA.Checks = true, nil
	if _, err := client.UpdateStatus(ctx, bad, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "ready must be false when a GPU with NICs is not ready") {
		t.Errorf("a ready node with GPUs not ready: %v", err)
	}

	createPod(t, cp, "rdma-8", 8, withAnnotations(nvlinktopo.AnnotationRDMA, "true"))
	waitForFailedScheduling(t, cp, "rdma-8", "only 4 free GPUs are ready for GPUDirect RDMA")
	createPod(t, cp, "rdma-4", 4, withAnnotations(nvlinktopo.AnnotationRDMA, "true"))
	if node := waitForBinding(t, cp, "rdma-4"); node != "two-socket" {
		t.Errorf("RDMA pod bound to %s, want two-socket", node)
	}
}
