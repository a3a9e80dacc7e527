package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
)

// Publisher writes one node's NodeTopology, labels and GPUDirectRDMAReady
// condition, and only when they change. It is not safe for concurrent use.
type Publisher struct {
	Kube   kubernetes.Interface
	Tandem versioned.Interface
	Clock  clock.PassiveClock

	// current is the NodeTopology as the server last returned it.
	current *v1alpha1.NodeTopology
}

// Writes counts what one Publish call wrote.
type Writes struct {
	Topology, Labels, Condition bool
	// Transitions are the NodeTopology conditions whose status changed in
	// this write, with Previous their status before ("" when new).
	Transitions []Transition
}

// Transition is a condition whose status changed.
type Transition struct {
	Previous  metav1.ConditionStatus
	Condition metav1.Condition
}

// Publish brings the node's NodeTopology, labels and condition in line with
// the discovery, writing only what differs.
func (p *Publisher) Publish(ctx context.Context, node *v1.Node, d *Discovery) (Writes, error) {
	var w Writes
	var err error
	if w.Topology, err = p.publishTopology(ctx, node, d, &w); err != nil {
		return w, err
	}
	if w.Labels, err = p.publishLabels(ctx, node, d.NodeLabels()); err != nil {
		return w, err
	}
	if w.Condition, err = p.publishCondition(ctx, node, d.GPUDirectCondition()); err != nil {
		return w, err
	}
	return w, nil
}

func ownerRef(node *v1.Node) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: ptr.To(true)}
}

func ownedBy(obj *v1alpha1.NodeTopology, node *v1.Node) bool {
	for _, r := range obj.OwnerReferences {
		if r.Kind == "Node" && r.APIVersion == "v1" && r.UID == node.UID && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

// ensure makes p.current the server's NodeTopology for node, creating it or
// fixing its owner reference when needed.
func (p *Publisher) ensure(ctx context.Context, node *v1.Node) error {
	client := p.Tandem.TandemV1alpha1().NodeTopologies()
	if p.current == nil {
		got, err := client.Get(ctx, node.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			obj := &v1alpha1.NodeTopology{ObjectMeta: metav1.ObjectMeta{Name: node.Name, OwnerReferences: []metav1.OwnerReference{ownerRef(node)}}}
			created, err := client.Create(ctx, obj, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("creating NodeTopology %s: %w", node.Name, err)
			}
			klog.FromContext(ctx).Info("Created NodeTopology", "nodeTopology", klog.KObj(created))
			p.current = created
			return nil
		case err != nil:
			return fmt.Errorf("getting NodeTopology %s: %w", node.Name, err)
		}
		p.current = got
	}
	if ownedBy(p.current, node) {
		return nil
	}
	// The Node was re-created (new UID): point the owner at the new one.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := p.current.DeepCopy()
		obj.OwnerReferences = []metav1.OwnerReference{ownerRef(node)}
		updated, err := client.Update(ctx, obj, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, gerr := client.Get(ctx, node.Name, metav1.GetOptions{}); gerr == nil {
				p.current = fresh
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("updating owner of NodeTopology %s: %w", node.Name, err)
		}
		p.current = updated
		return nil
	})
}

func (p *Publisher) publishTopology(ctx context.Context, node *v1.Node, d *Discovery, w *Writes) (bool, error) {
	if err := p.ensure(ctx, node); err != nil {
		p.current = nil
		return false, err
	}
	client := p.Tandem.TandemV1alpha1().NodeTopologies()
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		now := p.Clock.Now()
		desired := d.Status(p.current.Status.Conditions, now)
		if !p.current.Status.LastHeartbeatTime.IsZero() && StatusEqual(desired, p.current.Status) {
			return nil
		}
		desired.LastHeartbeatTime = metav1.NewTime(now)
		obj := p.current.DeepCopy()
		obj.Status = desired
		prev := p.current.Status.Conditions
		updated, err := client.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			fresh, gerr := client.Get(ctx, node.Name, metav1.GetOptions{})
			if gerr != nil {
				return fmt.Errorf("getting NodeTopology %s after a conflict: %w", node.Name, gerr)
			}
			p.current = fresh
			return err
		}
		if err != nil {
			if apierrors.IsNotFound(err) {
				p.current = nil
			}
			return fmt.Errorf("updating status of NodeTopology %s: %w", node.Name, err)
		}
		p.current = updated
		wrote = true
		w.Transitions = transitions(prev, desired.Conditions)
		klog.FromContext(ctx).V(2).Info("Updated NodeTopology status", "nodeTopology", klog.KObj(updated))
		return nil
	})
	return wrote, err
}

// Heartbeat sets LastHeartbeatTime alone with a merge patch, which never
// conflicts. It does nothing before the first Publish.
func (p *Publisher) Heartbeat(ctx context.Context) (bool, error) {
	if p.current == nil {
		return false, nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"lastHeartbeatTime": metav1.NewTime(p.Clock.Now())}})
	if err != nil {
		return false, err
	}
	name := p.current.Name
	updated, err := p.Tandem.TandemV1alpha1().NodeTopologies().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		if apierrors.IsNotFound(err) {
			// Recreated at the next sync.
			p.current = nil
		}
		return false, fmt.Errorf("heartbeat on NodeTopology %s: %w", name, err)
	}
	p.current = updated
	return true, nil
}

// publishLabels patches only the managed labels, and only those that differ.
func (p *Publisher) publishLabels(ctx context.Context, node *v1.Node, want map[string]string) (bool, error) {
	changes := map[string]any{}
	for _, k := range ManagedLabels {
		have, present := node.Labels[k]
		switch v := want[k]; {
		case v == "" && present:
			changes[k] = nil
		case v != "" && (!present || have != v):
			changes[k] = v
		}
	}
	if len(changes) == 0 {
		return false, nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": changes}})
	if err != nil {
		return false, err
	}
	if _, err := p.Kube.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return false, fmt.Errorf("patching labels of node %s: %w", node.Name, err)
	}
	klog.FromContext(ctx).Info("Updated node labels", "node", klog.KObj(node), "labels", changes)
	return true, nil
}

// publishCondition sets the node's GPUDirectRDMAReady condition with a
// strategic merge patch of the status, which touches no other condition.
func (p *Publisher) publishCondition(ctx context.Context, node *v1.Node, c metav1.Condition) (bool, error) {
	want := v1.NodeCondition{Type: ConditionGPUDirectRDMAReady, Status: v1.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message}
	for _, have := range node.Status.Conditions {
		if have.Type == want.Type {
			if have.Status == want.Status && have.Reason == want.Reason && have.Message == want.Message {
				return false, nil
			}
			want.LastTransitionTime = have.LastTransitionTime
			if have.Status != want.Status {
				want.LastTransitionTime = metav1.Time{}
			}
		}
	}
	now := metav1.NewTime(p.Clock.Now().Truncate(time.Second))
	want.LastHeartbeatTime = now
	if want.LastTransitionTime.IsZero() {
		want.LastTransitionTime = now
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []v1.NodeCondition{want}}})
	if err != nil {
		return false, err
	}
	if _, err := p.Kube.CoreV1().Nodes().PatchStatus(ctx, node.Name, patch); err != nil {
		return false, fmt.Errorf("patching condition %s of node %s: %w", want.Type, node.Name, err)
	}
	klog.FromContext(ctx).Info("Updated node condition", "node", klog.KObj(node), "type", want.Type, "status", want.Status, "reason", want.Reason)
	return true, nil
}

// transitions are the conditions of next whose status differs from prev's.
func transitions(prev, next []metav1.Condition) []Transition {
	var out []Transition
	for _, c := range next {
		var was metav1.ConditionStatus
		if old := meta.FindStatusCondition(prev, c.Type); old != nil {
			was = old.Status
		}
		if was != c.Status {
			out = append(out, Transition{Previous: was, Condition: c})
		}
	}
	return out
}
