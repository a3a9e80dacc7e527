package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

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
