package nodeagent

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Defaults for Agent's intervals.
const (
	DefaultHeartbeatInterval = time.Minute
	DefaultResyncInterval    = 30 * time.Second
)

// Agent discovers at every resync and publishes what changed, and beats the
// heartbeat at its own interval.
type Agent struct {
	NodeName   string
	Kube       kubernetes.Interface
	Discoverer *Discoverer
	Publisher  *Publisher
	Clock      clock.WithTicker

	ResyncInterval    time.Duration
	HeartbeatInterval time.Duration
	// Backoff spaces retries after a failed sync; its Cap bounds the wait.
	Backoff wait.Backoff

	// OnSync, when set, is called after every sync Run makes (for tests).
	OnSync func(Writes, error)
	// Health, when set, is told of every sync and heartbeat (/healthz,
	// /metrics).
	Health *Health
	// Recorder, when set, gets an event on the Node for every condition
	// whose status changes: Normal when it becomes True, Warning otherwise.
	Recorder record.EventRecorder

	// multiRailLeaves is the number of leaves last logged for a node whose
	// NICs reach several with none holding a majority; 0 when it is not one.
	multiRailLeaves int
}

// DefaultBackoff is the retry schedule after a failed sync.
func DefaultBackoff() wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 8, Cap: 2 * time.Minute}
}

// Run syncs once, then at every resync interval, heartbeats in between, and
// retries failed syncs with exponential backoff. It returns when ctx ends,
// leaving everything it published in place.
func (a *Agent) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("node", a.NodeName)
	ctx = klog.NewContext(ctx, logger)
	if a.ResyncInterval <= 0 || a.HeartbeatInterval <= 0 {
		return fmt.Errorf("resync interval %v and heartbeat interval %v must be positive", a.ResyncInterval, a.HeartbeatInterval)
	}
	resync := a.Clock.NewTicker(a.ResyncInterval)
	defer resync.Stop()
	heartbeat := a.Clock.NewTicker(a.HeartbeatInterval)
	defer heartbeat.Stop()
	backoff := a.Backoff
	if backoff.Steps == 0 {
		backoff = DefaultBackoff()
	}
	var retryC <-chan time.Time
	sync := func() {
		w, err := a.SyncOnce(ctx)
		// Reported once the retry is scheduled, so that a test stepping a
		// fake clock on the report cannot step past it.
		defer a.report(w, err)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff.Step()
			logger.Error(err, "Sync failed; retrying", "after", wait)
			retryC = a.Clock.After(wait)
			return
		}
		backoff = a.Backoff
		if backoff.Steps == 0 {
			backoff = DefaultBackoff()
		}
		retryC = nil
	}
	sync()
	for {
		select {
		case <-ctx.Done():
			logger.Info("Stopping; published state is left in place")
			return nil
		case <-resync.C():
			sync()
		case <-retryC:
			sync()
		case <-heartbeat.C():
			wrote, err := a.Publisher.Heartbeat(ctx)
			if err != nil && ctx.Err() == nil {
				logger.Error(err, "Heartbeat failed")
			}
			if a.Health != nil {
				a.Health.ObserveHeartbeat(wrote, err)
			}
		}
	}
}

// SyncOnce reads the Node, discovers and publishes, and emits an event for
// every condition whose status changed. It is not safe for concurrent use.
func (a *Agent) SyncOnce(ctx context.Context) (Writes, error) {
	start := time.Now()
	d, w, err := a.syncOnce(ctx)
	if a.Health != nil {
		a.Health.ObserveSync(d, w, err, time.Since(start))
	}
	return w, err
}

func (a *Agent) syncOnce(ctx context.Context) (*Discovery, Writes, error) {
	node, err := a.Kube.CoreV1().Nodes().Get(ctx, a.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, Writes{}, fmt.Errorf("getting node %s: %w", a.NodeName, err)
	}
	d := a.Discoverer.Discover(ctx, leaf.Node{Name: node.Name, Labels: node.Labels})
	a.logMultiRail(ctx, d)
	w, err := a.Publisher.Publish(ctx, node, d)
	a.emitTransitions(node, w.Transitions)
	return d, w, err
}

// emitTransitions records an event on the Node per changed condition. A
// condition that first appears True is not news; one that first appears
// otherwise is.
func (a *Agent) emitTransitions(node *v1.Node, ts []Transition) {
	if a.Recorder == nil {
		return
	}
	ref := &v1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node.Name, UID: node.UID}
	for _, t := range ts {
		c := t.Condition
		if t.Previous == "" && c.Status == metav1.ConditionTrue {
			continue
		}
		kind := v1.EventTypeWarning
		if c.Status == metav1.ConditionTrue {
			kind = v1.EventTypeNormal
		}
		was := string(t.Previous)
		if was == "" {
			was = "unset"
		}
		a.Recorder.Eventf(ref, kind, c.Reason, "%s is %s (was %s): %s", c.Type, c.Status, was, c.Message)
		if a.Health != nil {
			a.Health.ObserveEvent()
		}
	}
}

// logMultiRail logs, at info, that the node's NICs reach several leaves with
// none holding a majority, so that no node leaf is published: once when the
// agent first sees it and again when the number of leaves changes, not at
// every resync.
func (a *Agent) logMultiRail(ctx context.Context, d *Discovery) {
	leaves := 0
	if d.Fabric.MultiRail() {
		leaves = d.Fabric.Leaves
	}
	if leaves == a.multiRailLeaves {
		return
	}
	a.multiRailLeaves = leaves
	if leaves > 0 {
		klog.FromContext(ctx).Info("NICs reach several leaves and none holds a majority, as on a rail-optimised fabric; publishing no node leaf",
			"leaves", leaves, "nics", len(d.NICs), "label", topology.LabelLeaf)
	}
}

func (a *Agent) report(w Writes, err error) {
	if a.OnSync != nil {
		a.OnSync(w, err)
	}
}
