package nodeagent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
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
	// recorder, when setup sets it, is the agent's event recorder.
	recorder record.EventRecorder
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
		Backoff:  wait.Backoff{Duration: time.Second, Factor: 2, Steps: 5, Cap: time.Minute},
		OnSync:   func(_ Writes, err error) { h.syncs <- err },
		Recorder: h.recorder,
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

// A node that turns multi-rail loses the tandem.dev/leaf label an earlier
// run set, says why in its NodeTopology, and logs it once, not per resync.
func TestAgentMultiRailNodeDropsLeafLabel(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: m.Spec.Hostname, UID: "node-uid-1", Labels: map[string]string{
		topology.LabelLeaf:   "su1-rail0", // from an earlier run, when rail 0 won the tie
		"example.com/rack":   "r12",
		topology.LabelSpine:  "",
		"kubernetes.io/arch": "amd64",
	}}}
	kube := kubefake.NewClientset(node)
	tandem := tandemfake.NewSimpleClientset()
	src := &leafSource{leaves: railLeaves(-1)}
	a := &Agent{
		NodeName:   node.Name,
		Kube:       kube,
		Discoverer: discoverer(m, src),
		Publisher:  &Publisher{Kube: kube, Tandem: tandem, Clock: clocktesting.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))},
	}
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx := klog.NewContext(context.Background(), logger)
	logged := func() []string {
		var out []string
		for _, e := range logger.GetSink().(ktesting.Underlier).GetBuffer().Data() {
			if strings.Contains(e.Message, "publishing no node leaf") {
				out = append(out, fmt.Sprint(e.ParameterKVList))
			}
		}
		return out
	}
	sync := func(step string) (Writes, *v1.Node, *v1alpha1.NodeTopology) {
		t.Helper()
		w, err := a.SyncOnce(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		n, err := kube.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nt, err := tandem.TandemV1alpha1().NodeTopologies().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return w, n, nt
	}
	leafCondition := func(nt *v1alpha1.NodeTopology) string {
		c := meta.FindStatusCondition(nt.Status.Conditions, ConditionLeafDiscovered)
		if c == nil {
			return "missing"
		}
		return string(c.Status) + "/" + c.Reason
	}

	w, n, nt := sync("eight rails")
	if v, ok := n.Labels[topology.LabelLeaf]; ok || !w.Labels {
		t.Errorf("stale leaf label %q left on a multi-rail node (labels written: %v)", v, w.Labels)
	}
	if _, ok := n.Labels[topology.LabelSpine]; ok || n.Labels["example.com/rack"] != "r12" {
		t.Errorf("labels %v: want the empty managed spine label removed and others kept", n.Labels)
	}
	if nt.Status.Leaf != "" || leafCondition(nt) != "True/MultiRail" {
		t.Errorf("leaf %q, LeafDiscovered %s", nt.Status.Leaf, leafCondition(nt))
	}
	for i, nic := range nt.Status.NICs {
		if nic.Leaf != fmt.Sprintf("su1-rail%d", i) || nic.Rail != int32(i) {
			t.Errorf("NIC %s: leaf %q rail %d", nic.Name, nic.Leaf, nic.Rail)
		}
	}
	if got := logged(); len(got) != 1 || !strings.Contains(got[0], "leaves 8 ") {
		t.Errorf("multi-rail log lines %v, want one with leaves 8", got)
	}

	// Nothing changes at the next resync, and nothing more is logged.
	if w, _, _ := sync("resync"); w.Labels || len(logged()) != 1 {
		t.Errorf("resync wrote labels %v, logged %v", w.Labels, logged())
	}

	// LLDP fails for rail 0's NIC: still multi-rail, still no leaf label.
	src.leaves = railLeaves(0)
	if w, n, nt := sync("rail 0 unknown"); w.Labels || n.Labels[topology.LabelLeaf] != "" || nt.Status.Leaf != "" || leafCondition(nt) != "False/MultiRail" {
		t.Errorf("rail 0 unknown: labels written %v, leaf label %q, leaf %q, LeafDiscovered %s", w.Labels, n.Labels[topology.LabelLeaf], nt.Status.Leaf, leafCondition(nt))
	}
	if got := logged(); len(got) != 2 || !strings.Contains(got[1], "leaves 7 ") {
		t.Errorf("multi-rail log lines %v, want a second with leaves 7", got)
	}

	// Recabled onto one leaf: the label comes back; and goes again.
	src.leaves = repeat("leaf-07", 8)
	if _, n, nt := sync("one leaf"); n.Labels[topology.LabelLeaf] != "leaf-07" || nt.Status.Leaf != "leaf-07" {
		t.Errorf("one leaf: label %q, leaf %q", n.Labels[topology.LabelLeaf], nt.Status.Leaf)
	}
	src.leaves = railLeaves(-1)
	if _, n, _ = sync("rails again"); n.Labels[topology.LabelLeaf] != "" {
		t.Errorf("rails again: leaf label %q", n.Labels[topology.LabelLeaf])
	}
	if v, ok := n.Labels[topology.LabelLeaf]; ok {
		t.Errorf("rails again: leaf label %q present, want it removed", v)
	}
	if got := logged(); len(got) != 3 {
		t.Errorf("multi-rail log lines %v, want a third after the node turned multi-rail again", got)
	}
}
