package gang

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// Reserve counts the pod as placed in its group, for Permit's quorum.
func (g *Gang) Reserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) *fwk.Status {
	if k, ok := keyOf(pod); ok {
		g.groups.assign(k, pod.UID)
	}
	return nil
}

// Unreserve gives the pod's place back: the pod no longer counts toward its
// group, and since the group cannot be completed as it stands, its pods
// waiting at Permit are rejected and the failure is marked.
func (g *Gang) Unreserve(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	k, ok := keyOf(pod)
	if !ok {
		return
	}
	g.groups.unassign(k, pod.UID)
	rejected := g.rejectWaiting(k, pod, fmt.Sprintf("PodGroup %s rejected: rejection in Unreserve of its pod %s", k, pod.Name))
	g.markFailed(k)
	klog.FromContext(ctx).V(3).Info("Unreserved a pod of a PodGroup", "podGroup", k.String(), "pod", klog.KObj(pod), "rejected", rejected)
}
