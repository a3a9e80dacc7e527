package gang

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// EventsToRegister asks for a retry of a group's rejected pods when a pod of
// the group is added (created, or bound: the scheduler sees a pod's
// binding as an assigned pod's Add), and, for a group whose minResources
// the cluster could not hold, when a node is added or an assigned pod goes
// away. PodGroup events are not registered: the scheduler would watch them
// through a dynamic informer of its own, a second list and cache of every
// PodGroup. The process's one PodGroup informer activates a group's pending
// pods instead when their PodGroup is created or its spec changes (see
// watchPodGroups). A group's other pods are also activated by its first pod
// to wait at Permit, and by the end of its backoff.
func (g *Gang) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add}, QueueingHintFn: g.isSchedulableAfterPodAdded},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}, QueueingHintFn: g.isSchedulableAfterCapacityFreed},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add}, QueueingHintFn: g.isSchedulableAfterCapacityFreed},
	}, nil
}

func (g *Gang) isSchedulableAfterPodAdded(logger klog.Logger, pod *v1.Pod, _, newObj interface{}) (fwk.QueueingHint, error) {
	_, added, err := util.As[*v1.Pod](nil, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	k, ok := keyOf(pod)
	if !ok {
		return fwk.QueueSkip, nil
	}
	if ak, ok := keyOf(added); !ok || ak != k {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A pod of the PodGroup was added", "pod", klog.KObj(pod), "added", klog.KObj(added), "podGroup", k.String())
	return fwk.Queue, nil
}

// isSchedulableAfterCapacityFreed requeues a pod whose group sets
// minResources when a node is added or an assigned pod is deleted, either
// of which may let the cluster hold it.
func (g *Gang) isSchedulableAfterCapacityFreed(logger klog.Logger, pod *v1.Pod, oldObj, _ interface{}) (fwk.QueueingHint, error) {
	if deleted, ok := oldObj.(*v1.Pod); ok && deleted.Spec.NodeName == "" {
		return fwk.QueueSkip, nil
	}
	k, ok := keyOf(pod)
	if !ok {
		return fwk.QueueSkip, nil
	}
	pg, err := g.podGroup(k)
	if err != nil || pg.Spec.MinResources == nil {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("Capacity may have been freed for the PodGroup's minResources", "pod", klog.KObj(pod), "podGroup", k.String())
	return fwk.Queue, nil
}

// watchPods keeps the groups' assigned pods current from the scheduler's
// pod informer: a bound pod counts as assigned whether it is seen bound
// when added (every bound pod after a scheduler restart) or becomes bound
// in an update (bound by another scheduler, or seen late), and a deleted
// pod no longer counts.
func (g *Gang) watchPods(informer cache.SharedIndexInformer) error {
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			if pod, ok := obj.(*v1.Pod); ok {
				g.podBound(pod)
			}
		},
		UpdateFunc: func(oldObj, newObj interface{}) {
			oldPod, ok1 := oldObj.(*v1.Pod)
			pod, ok2 := newObj.(*v1.Pod)
			if !ok1 || !ok2 {
				return
			}
			if k, ok := keyOf(oldPod); ok {
				if nk, _ := keyOf(pod); nk != k {
					g.groups.unassign(k, oldPod.UID)
				}
			}
			g.podBound(pod)
		},
		DeleteFunc: func(obj interface{}) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				if k, ok := keyOf(pod); ok {
					g.groups.unassign(k, pod.UID)
				}
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	return nil
}

// podBound counts a bound pod of a group as assigned. When that completes
// the group's quorum (its pods bound elsewhere or seen late), the group's
// waiting pods are let go.
func (g *Gang) podBound(pod *v1.Pod) {
	if pod.Spec.NodeName == "" {
		return
	}
	k, ok := keyOf(pod)
	if !ok {
		return
	}
	count, added := g.groups.assign(k, pod.UID)
	if !added {
		return
	}
	pg, err := g.podGroup(k)
	if err != nil || count < int(pg.Spec.MinMember) {
		return
	}
	if n := g.allowWaiting(k, pod); n > 0 {
		g.groups.clearFailed(k)
		klog.Background().V(3).Info("A bound pod completed the PodGroup's quorum", "podGroup", k.String(), "pod", klog.KObj(pod), "allowed", n)
	}
}

// watchPodGroups keeps each PodGroup's creation time for the queue's order,
// and activates a group's pending pods when its PodGroup is created or its
// spec changes (a missing PodGroup, a smaller minMember, new minResources).
func (g *Gang) watchPodGroups(informer cache.SharedIndexInformer) (cache.ResourceEventHandlerRegistration, error) {
	logger := klog.Background().WithValues("plugin", Name)
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj interface{}, initial bool) {
			pg, ok := obj.(*schedulingv1alpha1.PodGroup)
			if !ok {
				return
			}
			k := groupKey{pg.Namespace, pg.Name}
			g.groups.setCreated(k, pg.CreationTimestamp.Time)
			// The initial list comes before the scheduler's queue exists.
			if !initial {
				g.activate(logger, k)
			}
		},
		UpdateFunc: func(oldObj, newObj interface{}) {
			old, ok1 := oldObj.(*schedulingv1alpha1.PodGroup)
			pg, ok2 := newObj.(*schedulingv1alpha1.PodGroup)
			if !ok1 || !ok2 {
				return
			}
			k := groupKey{pg.Namespace, pg.Name}
			g.groups.setCreated(k, pg.CreationTimestamp.Time)
			if !equality.Semantic.DeepEqual(old.Spec, pg.Spec) {
				g.groups.dropCapacity(k)
				g.activate(logger, k)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pg, ok := obj.(*schedulingv1alpha1.PodGroup); ok {
				g.groups.forget(groupKey{pg.Namespace, pg.Name})
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching PodGroups: %w", err)
	}
	return reg, nil
}

// activate moves the group's pending pods to the active queue.
func (g *Gang) activate(logger klog.Logger, k groupKey) {
	pods := g.pending(k, nil)
	if len(pods) == 0 {
		return
	}
	logger.V(4).Info("Activating the PodGroup's pending pods", "podGroup", k.String(), "count", len(pods))
	g.handle.Activate(logger, pods)
}
