package nvlinktopo

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// Reserve records the GPUs the pod is expected to get in the model, so that
// pods placed before the agent's next report see them taken. A pod that
// needs nothing only the topology can promise is let through on a node
// whose topology is missing or stale, as Filter let it through.
func (pl *NVLinkTopo) Reserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	s, err := readPreFilterState(cycleState)
	if err != nil {
		// PreFilter skipped the pod: it has no GPUs to record.
		return nil
	}
	req := pl.requestOn(s, node)
	fit, unfit, reason := pl.cluster.Reserve(string(pod.UID), pod.Namespace+"/"+pod.Name, node, req, pl.untrusted)
	switch {
	case reason != "" && !needsTopology(req):
		return nil
	case reason != "":
		return fwk.NewStatus(fwk.Unschedulable, reason)
	case unfit != nil:
		return fwk.NewStatus(fwk.Unschedulable, unfit.Reason)
	}
	pl.waiting.remove(pod.UID)
	klog.FromContext(ctx).V(4).Info("Reserved GPUs", "pod", klog.KObj(pod), "node", node, "gpus", fit.GPUs)
	return nil
}

// Unreserve forgets the pod's GPUs when its placement is abandoned.
func (pl *NVLinkTopo) Unreserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) {
	pl.cluster.Release(string(pod.UID))
}
