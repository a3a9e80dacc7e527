package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// PreFilter lets a pod of a PodGroup on only when its group can be placed
// whole: the PodGroup exists, is not backed off after a failure, has at
// least minMember pods of which at least minMember are not
// scheduling-gated, and, when it sets minResources, the cluster has that
// much room. Each refusal is UnschedulableAndUnresolvable (preemption
// cannot fix it) and names the PodGroup. A pod in no group is skipped.
func (g *Gang) PreFilter(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	k, ok := keyOf(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	logger := klog.FromContext(ctx)
	pg, err := g.podGroup(k)
	if apierrors.IsNotFound(err) {
		// Refused here rather than at Permit, so that the pod holds no
		// node while nobody can complete its group; the PodGroup's
		// creation retries it (see watchPodGroups).
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("PodGroup %s (scheduling.x-k8s.io/v1alpha1) not found: create it, or remove the pod's %s label", k, LabelPodGroup))
	}
	if err != nil {
		return nil, fwk.AsStatus(fmt.Errorf("reading PodGroup %s: %w", k, err))
	}
	now := g.clock.Now()
	if until, ok := g.groups.backedOff(k, now); ok {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("PodGroup %s failed to schedule and is backed off until %s", k, until.UTC().Format(time.RFC3339)))
	}
	minMember := int(pg.Spec.MinMember)
	pods := g.members(k)
	if len(pods) < minMember {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("PodGroup %s has %d pods, fewer than its minMember %d", k, len(pods), minMember))
	}
	// minMember may be less than the group's pods: as many gated pods as
	// the surplus are tolerated.
	gated := 0
	for _, p := range pods {
		if len(p.Spec.SchedulingGates) > 0 {
			gated++
		}
	}
	if len(pods)-gated < minMember {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("PodGroup %s has %d pods, %d of them scheduling-gated: fewer than its minMember %d can be scheduled", k, len(pods), gated, minMember))
	}
	if pg.Spec.MinResources == nil || g.groups.capacityChecked(k, now) {
		return nil, nil
	}
	// The cluster-capacity check is O(nodes); a pass is kept for the
	// plugin's Permit wait, so the group's other pods do not repeat it.
	need := pg.Spec.MinResources.DeepCopy()
	need[v1.ResourcePods] = *resource.NewQuantity(int64(minMember), resource.DecimalSI)
	if short := capacityShortfall(logger, nodes, need, k); len(short) > 0 {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("PodGroup %s needs %s (minResources and minMember %d); the cluster's free capacity falls short by %s", k, formatResources(need), minMember, formatResources(short)))
	}
	g.groups.setCapacityChecked(k, now.Add(g.permitWait))
	return nil, nil
}

// PreFilterExtensions returns nil: Gang has no Filter for preemption to
// rerun.
func (g *Gang) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// PostFilter runs when a pod of a group fits no node. Unless the group
// already has its quorum, or the pods it still lacks are at most
// podGroupRejectPercentage of minMember (later pods may still complete
// it), the group's pods waiting at Permit are rejected so their nodes are
// freed, the failure is marked (the group sorts behind the queue's others
// from now), and the group is backed off when podGroupBackoffSeconds is set.
// It never nominates a node.
func (g *Gang) PostFilter(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	k, ok := keyOf(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	logger := klog.FromContext(ctx)
	pg, err := g.podGroup(k)
	if err != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	minMember := int(pg.Spec.MinMember)
	assigned := g.groups.assignedCount(k)
	if assigned >= minMember {
		logger.V(4).Info("PodGroup has its quorum; not rejecting it", "podGroup", k.String(), "assigned", assigned)
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if gap := float64(minMember-assigned) / float64(minMember); gap <= g.rejectShare {
		logger.V(4).Info("PodGroup lacks few pods; its later pods may complete it", "podGroup", k.String(), "assigned", assigned, "minMember", minMember)
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	msg := fmt.Sprintf("PodGroup %s rejected: its pod %s is unschedulable", k, pod.Name)
	rejected := g.rejectWaiting(k, pod, msg)
	// As Coscheduling, a group that has not all its pods yet is not backed
	// off: it is waiting for them, not failing.
	if len(g.members(k)) >= minMember {
		g.backOff(logger, k)
	}
	g.markFailed(k)
	logger.V(3).Info("Rejected the PodGroup's waiting pods", "podGroup", k.String(), "pod", klog.KObj(pod), "rejected", rejected)
	return nil, fwk.NewStatus(fwk.Unschedulable, msg+" even after PostFilter")
}
