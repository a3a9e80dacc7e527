package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/plugins/nvlinktopo"
)

// Three identical HGX nodes; only one has a NodeTopology the agent confirmed
// recently.
const freshStaleMissing = `
nodes:
- {name: fresh, shape: hgx-h100, spine: s1, leaf: s1-l1}
- {name: stale, shape: hgx-h100, spine: s1, leaf: s1-l1, topology: stale}
- {name: bare, shape: hgx-h100, spine: s1, leaf: s1-l1, topology: missing}
`

func TestGPUPodsBindOnlyWhereTopologyIsFresh(t *testing.T) {
	cp := startCluster(t, freshStaleMissing)
	// Four 2-GPU pods fill the one node tandem can vouch for, although the
	// other two have the same free GPUs.
	names := []string{"engine-0", "engine-1", "engine-2", "engine-3"}
	for _, name := range names {
		createPod(t, cp, name, 2)
	}
	for _, name := range names {
		if node := waitForBinding(t, cp, name); node != "fresh" {
			t.Errorf("pod %s bound to %s, want fresh", name, node)
		}
	}
	// The fifth finds no GPU left on "fresh" and must not spill onto the
	// nodes whose topology is stale or missing.
	createPod(t, cp, "engine-4", 2)
	msg := waitForFailedScheduling(t, cp, "engine-4", "0/3 nodes are available")
	for _, want := range []string{"Insufficient nvidia.com/gpu", "NodeTopology is stale", nvlinktopo.ReasonNoTopology} {
		if !strings.Contains(msg, want) {
			t.Errorf("FailedScheduling message %q does not contain %q", msg, want)
		}
	}
}

func TestPodWithoutGPUsIgnoresTopology(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: bare, shape: hgx-h100, topology: missing}
`)
	createPod(t, cp, "router", 0)
	if node := waitForBinding(t, cp, "router"); node != "bare" {
		t.Errorf("pod router bound to %s, want bare", node)
	}
}

func TestDefaultSchedulerPodsAreLeftAlone(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: fresh, shape: hgx-h100}
`)
	createPod(t, cp, "not-ours", 1, withScheduler(v1.DefaultSchedulerName))
	// A tandem pod created after it binds, so the scheduler has seen both.
	createPod(t, cp, "ours", 1)
	waitForBinding(t, cp, "ours")

	pod, err := cp.Client.CoreV1().Pods(namespace).Get(context.Background(), "not-ours", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "" || len(pod.Status.Conditions) > 0 {
		t.Errorf("tandem touched a pod for %s: node %q, conditions %v", v1.DefaultSchedulerName, pod.Spec.NodeName, pod.Status.Conditions)
	}
	if events := eventsFor(cp, "not-ours"); events != "" {
		t.Errorf("events recorded for a pod tandem does not schedule:%s", events)
	}
}

func TestStaleTopologyKeepsPodPendingUntilRefreshed(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: gpu-0, shape: hgx-h100, topology: stale}
`)
	createPod(t, cp, "engine", 8)
	waitForFailedScheduling(t, cp, "engine", "NodeTopology is stale", "maxTopologyAge 5m0s")

	// The agent's next heartbeat makes the node usable, and the update
	// requeues the pod without waiting for a periodic flush.
	ctx := context.Background()
	nt, err := cp.Tandem.TandemV1alpha1().NodeTopologies().Get(ctx, "gpu-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nt.Status.LastHeartbeatTime = metav1.Now()
	if _, err := cp.Tandem.TandemV1alpha1().NodeTopologies().UpdateStatus(ctx, nt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if node := waitForBinding(t, cp, "engine"); node != "gpu-0" {
		t.Errorf("pod bound to %s, want gpu-0", node)
	}
}

func TestMalformedPDLabelsAreReported(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: fresh, shape: hgx-h100}
`)
	createPod(t, cp, "bad-role", 1, withLabels("tandem.dev/role", "router", "tandem.dev/group", "llama"))
	createPod(t, cp, "no-group", 1, withLabels("tandem.dev/role", "decode"))
	createPod(t, cp, "good", 1, withLabels("tandem.dev/role", "decode", "tandem.dev/group", "llama"))
	waitForFailedScheduling(t, cp, "bad-role", `pod label tandem.dev/role="router" is not one of prefill, decode`)
	waitForFailedScheduling(t, cp, "no-group", "tandem.dev/role=decode needs a non-empty tandem.dev/group")
	waitForBinding(t, cp, "good")
}

func TestSchedulerRefusesInvalidPluginArgs(t *testing.T) {
	cp := controlplane.StartControlPlane(t)
	shipped, err := os.ReadFile(controlplane.ShippedSchedulerConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to string
		wantErr        string
	}{
		{
			name: "island policy", from: "islandPolicy: Required", to: "islandPolicy: Always",
			wantErr: `pluginConfig[NVLinkTopo].args.islandPolicy: Unsupported value: "Always"`,
		},
		{
			name: "topology age", from: "maxTopologyAge: 5m", to: "maxTopologyAge: -1m",
			wantErr: "pluginConfig[NVLinkTopo].args.maxTopologyAge: Invalid value",
		},
		{
			name: "level preset", from: "levelPreset: tandem", to: "levelPreset: azure",
			wantErr: `pluginConfig[PDAffinity].args.levelPreset: Unsupported value: "azure"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(shipped), tc.from) {
				t.Fatalf("the shipped config no longer contains %q", tc.from)
			}
			path := filepath.Join(t.TempDir(), "scheduler-config.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(string(shipped), tc.from, tc.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			err := cp.StartScheduler(t, path, clock.RealClock{})
			if err == nil {
				t.Fatalf("the scheduler started with %s", tc.to)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("start-up error %q does not name the field: want %q", err, tc.wantErr)
			}
		})
	}
}
