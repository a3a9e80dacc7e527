package pdaffinity

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"
)

// EventsToRegister asks for a retry when a pod of the group binds (a decode
// waiting on its unit), when a pod goes away, when a node appears, and when a
// rejected pod's own labels change.
func (pl *PDAffinity) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add}, QueueingHintFn: pl.isSchedulableAfterPeerAdded},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.UpdatePodLabel}, QueueingHintFn: pl.isSchedulableAfterOwnLabelChange},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeLabel}},
	}, nil
}

func (pl *PDAffinity) isSchedulableAfterPeerAdded(logger klog.Logger, pod *v1.Pod, _, newObj interface{}) (fwk.QueueingHint, error) {
	_, added, err := util.As[*v1.Pod](nil, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if added.Spec.NodeName == "" || added.Namespace != pod.Namespace {
		return fwk.QueueSkip, nil
	}
	m, ok, err := pl.members.read(pod)
	if !ok || err != nil {
		return fwk.QueueSkip, nil
	}
	peer, ok, err := pl.members.read(added)
	if !ok || err != nil || peer.Group != m.Group {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A pod of the group was placed", "pod", klog.KObj(pod), "peer", klog.KObj(added))
	return fwk.Queue, nil
}

// isSchedulableAfterOwnLabelChange requeues a rejected pod whose own role,
// group or unit labels changed, the only fix for malformed ones.
func (pl *PDAffinity) isSchedulableAfterOwnLabelChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	oldPod, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newPod.UID != pod.UID {
		return fwk.QueueSkip, nil
	}
	if oldPod != nil && pl.sameMembership(oldPod, newPod) {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("P/D labels of the rejected pod changed", "pod", klog.KObj(pod))
	return fwk.Queue, nil
}

func (pl *PDAffinity) sameMembership(a, b *v1.Pod) bool {
	ma, oka, erra := pl.members.read(a)
	mb, okb, errb := pl.members.read(b)
	return ma == mb && oka == okb && fmt.Sprint(erra) == fmt.Sprint(errb)
}
