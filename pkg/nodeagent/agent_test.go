package nodeagent

import (
	"context"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	tandemfake "github.com/tandem-sched/tandem/pkg/generated/clientset/versioned/fake"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// harness runs an Agent on fake clientsets and a fake clock.
type harness struct {
	t      *testing.T
	m      *fixtures.Machine
	kube   *kubefake.Clientset
	tandem *tandemfake.Clientset
	clock  *clocktesting.FakeClock
	syncs  chan error
	mu     sync.Mutex
	writes []string
}

// setup, when set, runs before the agent starts (install reactors there).
func newHarness(t *testing.T, resync, heartbeat time.Duration, setup func(*harness)) *harness {
	h := &harness{t: t, m: build(t, fixtures.HGXH100()), clock: clocktesting.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), syncs: make(chan error, 100)}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.m.Spec.Hostname, UID: "node-uid-1", Labels: map[string]string{"network.topology.nvidia.com/tier-0": "leaf-07"}}}
	h.kube = kubefake.NewClientset(node)
	h.tandem = tandemfake.NewSimpleClientset()
	count := func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			h.mu.Lock()
			h.writes = append(h.writes, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
			h.mu.Unlock()
		}
		return false, nil, nil
	}
	h.kube.PrependReactor("*", "*", count)
	h.tandem.PrependReactor("*", "*", count)
	if setup != nil {
		setup(h)
	}
	agent := &Agent{
		NodeName:   node.Name,
		Kube:       h.kube,
		Discoverer: discoverer(h.m, leaf.Labels{}),
		Publisher:  &Publisher{Kube: h.kube, Tandem: h.tandem, Clock: h.clock},
		Clock:      h.clock, ResyncInterval: resync, HeartbeatInterval: heartbeat,
		Backoff: wait.Backoff{Duration: time.Second, Factor: 2, Steps: 5, Cap: time.Minute},
		OnSync:  func(_ Writes, err error) { h.syncs <- err },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func (h *harness) waitSync() error {
	h.t.Helper()
	select {
	case err := <-h.syncs:
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("no sync within 10s")
		return nil
	}
}

func (h *harness) writeCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.writes)
}

func (h *harness) waitWrites(n int) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.writeCount() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%d writes, want %d: %v", h.writeCount(), n, h.writes)
		}
		time.Sleep(time.Millisecond)
	}
}

// step advances the clock to the next resync and waits for the agent to
// have synced, after its tickers registered.
func (h *harness) step(d time.Duration) error {
	h.t.Helper()
	for !h.clock.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	h.clock.Step(d)
	return h.waitSync()
}

// Steady state: after the first publish, nothing is written for many resync
// periods except one heartbeat per heartbeat interval.
func TestAgentSteadyStateWritesOnlyHeartbeats(t *testing.T) {
	h := newHarness(t, 10*time.Second, time.Minute, nil)
	if err := h.waitSync(); err != nil {
		t.Fatal(err)
	}
	// create, status update, labels, node condition.
	first := h.writeCount()
	if first != 4 {
		t.Fatalf("first sync wrote %d times, want 4: %v", first, h.writes)
	}
	for i := 1; i <= 30; i++ { // five simulated minutes
		if err := h.step(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if i%6 == 0 {
			h.waitWrites(first + i/6)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if got := h.writeCount() - first; got != 5 {
		t.Fatalf("%d writes in 5 minutes of steady state, want 5 heartbeats: %v", got, h.writes[first:])
	}
	for _, w := range h.writes[first:] {
		if w != "patch nodetopologies/status" {
			t.Errorf("steady-state write %q is not a heartbeat", w)
		}
	}

	// A NIC port going down is published at the next resync: the status,
	// the gpudirect label and the node condition.
	before := h.writeCount()
	if err := h.m.SetPortState("mlx5_5", "1: DOWN", "3: Disabled"); err != nil {
		t.Fatal(err)
	}
	if err := h.step(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := h.writeCount() - before; got != 3 {
		t.Errorf("NIC down wrote %d times, want 3: %v", got, h.writes[before:])
	}
	nt, err := h.tandem.TandemV1alpha1().NodeTopologies().Get(context.Background(), h.m.Spec.Hostname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nt.Status.NICs[5].State != "Down" || nt.Status.GPUDirectRDMA.Ready {
		t.Errorf("NIC 5 %s, GPUDirect ready %v", nt.Status.NICs[5].State, nt.Status.GPUDirectRDMA.Ready)
	}
	if len(nt.OwnerReferences) != 1 || nt.OwnerReferences[0].UID != "node-uid-1" || !*nt.OwnerReferences[0].Controller {
		t.Errorf("owner references %+v", nt.OwnerReferences)
	}
	node, err := h.kube.CoreV1().Nodes().Get(context.Background(), h.m.Spec.Hostname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels[topology.LabelGPUDirectRDMA] != "false" || node.Labels[topology.LabelLeaf] != "leaf-07" {
		t.Errorf("labels %v", node.Labels)
	}
}

// API errors are retried after a backoff on the agent's clock, not at the
// next resync.
func TestAgentBacksOffOnAPIErrors(t *testing.T) {
	failures := 2
	h := newHarness(t, time.Hour, time.Hour, func(h *harness) {
		h.tandem.PrependReactor("create", "nodetopologies", func(k8stesting.Action) (bool, runtime.Object, error) {
			if failures > 0 {
				failures--
				return true, nil, apierrors.NewServiceUnavailable("etcd is sad")
			}
			return false, nil, nil
		})
	})
	if err := h.waitSync(); err == nil {
		t.Fatal("first sync succeeded despite the injected error")
	}
	if err := h.step(time.Second); err == nil { // first backoff
		t.Fatal("second sync succeeded despite the injected error")
	}
	if err := h.step(2 * time.Second); err != nil { // doubled
		t.Fatalf("third sync: %v", err)
	}
	if _, err := h.tandem.TandemV1alpha1().NodeTopologies().Get(context.Background(), h.m.Spec.Hostname, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A conflicting status update is retried on a fresh copy.
func TestPublisherRetriesConflicts(t *testing.T) {
	// The first status update (at the first sync) succeeds; the second
	// conflicts once.
	updates, conflicts := 0, 1
	h := newHarness(t, time.Hour, time.Hour, func(h *harness) {
		h.tandem.PrependReactor("update", "nodetopologies", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != "status" {
				return false, nil, nil
			}
			updates++
			if updates == 2 && conflicts > 0 {
				conflicts--
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "tandem.dev", Resource: "nodetopologies"}, "x", nil)
			}
			return false, nil, nil
		})
	})
	if err := h.waitSync(); err != nil {
		t.Fatal(err)
	}
	if err := h.m.SetPortState("mlx5_1", "1: DOWN", "3: Disabled"); err != nil {
		t.Fatal(err)
	}
	if err := h.step(time.Hour); err != nil {
		t.Fatalf("sync after a conflict: %v", err)
	}
	nt, err := h.tandem.TandemV1alpha1().NodeTopologies().Get(context.Background(), h.m.Spec.Hostname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if conflicts != 0 || updates != 3 || nt.Status.NICs[1].State != "Down" {
		t.Errorf("conflicts left %d, %d status updates (want 3), NIC 1 %s", conflicts, updates, nt.Status.NICs[1].State)
	}
}
