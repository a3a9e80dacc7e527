package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Permit lets a pod of a group bind once minMember of the group's pods are
// placed (reserved by this scheduler or bound), and lets the group's
// waiting pods go with it. Until then the pod waits, for the PodGroup's
// scheduleTimeoutSeconds or else permitWaitingTimeSeconds; the group's
// first waiting pod moves the group's other pending pods to the active
// queue, so that they are tried next.
func (g *Gang) Permit(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ string) (*fwk.Status, time.Duration) {
	k, ok := keyOf(pod)
	if !ok {
		return nil, 0
	}
	logger := klog.FromContext(ctx)
	pg, err := g.podGroup(k)
	if err != nil {
		// Deleted since PreFilter: nobody completes the group.
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("PodGroup %s not found", k)), 0
	}
	minMember := int(pg.Spec.MinMember)
	assigned := g.groups.assignedCount(k)
	if assigned >= minMember {
		g.groups.clearFailed(k)
		allowed := g.allowWaiting(k, pod)
		logger.V(3).Info("PodGroup has its quorum", "podGroup", k.String(), "pod", klog.KObj(pod), "assigned", assigned, "allowed", allowed)
		return nil, 0
	}
	if !g.anyWaiting(k, pod) {
		g.activateSiblings(logger, state, k, pod)
	}
	logger.V(4).Info("Pod waits for its PodGroup", "podGroup", k.String(), "pod", klog.KObj(pod), "assigned", assigned, "minMember", minMember)
	return fwk.NewStatus(fwk.Wait, fmt.Sprintf("waiting for PodGroup %s: %d of minMember %d pods placed", k, assigned, minMember)), g.waitTime(pg)
}

// waitTime is the PodGroup's scheduleTimeoutSeconds when it sets one above
// zero, else the plugin's permitWaitingTimeSeconds.
func (g *Gang) waitTime(pg *schedulingv1alpha1.PodGroup) time.Duration {
	if s := pg.Spec.ScheduleTimeoutSeconds; s != nil && *s > 0 {
		return time.Duration(*s) * time.Second
	}
	return g.permitWait
}

// anyWaiting says whether another pod of the group waits at Permit.
func (g *Gang) anyWaiting(k groupKey, except *v1.Pod) bool {
	for _, p := range g.members(k) {
		if p.UID != except.UID && g.handle.GetWaitingPod(p.UID) != nil {
			return true
		}
	}
	return false
}

// activateSiblings asks the scheduler to move the group's other pending
// pods to the active queue at the end of this cycle.
func (g *Gang) activateSiblings(logger klog.Logger, state fwk.CycleState, k groupKey, pod *v1.Pod) {
	pods := g.pending(k, pod)
	if len(pods) == 0 {
		return
	}
	c, err := state.Read(framework.PodsToActivateKey)
	if err != nil {
		return
	}
	s, ok := c.(*framework.PodsToActivate)
	if !ok {
		return
	}
	s.Lock()
	for name, p := range pods {
		s.Map[name] = p
	}
	s.Unlock()
	logger.V(4).Info("Activating the PodGroup's pending pods", "podGroup", k.String(), "count", len(pods))
}
