package nvlinktopo

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

// EventsToRegister asks for a retry when a pod holding GPUs goes away and
// when a node is added. NodeTopology events are not registered: the
// scheduler would watch them through a second informer of its own, listing
// every NodeTopology again at start-up. The placement model's informer
// activates the waiting GPU pods instead, once the model has a report that
// may help them (see NewFactory).
func (pl *NVLinkTopo) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return append([]fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}, QueueingHintFn: pl.isSchedulableAfterPodDeleted},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add}},
	}, pl.draEvents()...), nil
}

func (pl *NVLinkTopo) isSchedulableAfterPodDeleted(logger klog.Logger, pod *v1.Pod, oldObj, _ interface{}) (fwk.QueueingHint, error) {
	deleted, ok := oldObj.(*v1.Pod)
	if !ok {
		return fwk.Queue, fmt.Errorf("expected a *v1.Pod, got %T", oldObj)
	}
	if deleted.Spec.NodeName == "" || GPURequest(deleted, v1.ResourceName(pl.args.GPUResourceName)) == 0 {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A pod holding GPUs was deleted", "pod", klog.KObj(pod), "deleted", klog.KObj(deleted))
	return fwk.Queue, nil
}

// topologyImproved says whether going from old (nil when new) to nt could
// let a rejected pod fit.
func (pl *NVLinkTopo) topologyImproved(old, nt *topologyv1alpha1.NodeTopology) bool {
	if pl.staleReason(nt.Status.LastHeartbeatTime.Time) != "" {
		return false
	}
	if old == nil || pl.staleReason(old.Status.LastHeartbeatTime.Time) != "" {
		return true
	}
	a, b := old.Status.DeepCopy(), nt.Status.DeepCopy()
	a.LastHeartbeatTime, b.LastHeartbeatTime = metav1.Time{}, metav1.Time{}
	return !equality.Semantic.DeepEqual(a, b)
}

// reportSkew logs and records a Warning event on the Node when its report's
// heartbeat moves beyond MaxClockSkew ahead of the scheduler's clock; once,
// not on every heartbeat while it stays ahead.
func (pl *NVLinkTopo) reportSkew(logger klog.Logger, recorder events.EventRecorder, old, nt *topologyv1alpha1.NodeTopology) {
	if pl.staleReason(nt.Status.LastHeartbeatTime.Time) != ReasonHeartbeatFromFuture {
		return
	}
	if old != nil && pl.staleReason(old.Status.LastHeartbeatTime.Time) == ReasonHeartbeatFromFuture {
		return
	}
	ahead := -pl.clock.Since(nt.Status.LastHeartbeatTime.Time)
	logger.Info("NodeTopology heartbeat is ahead of the scheduler's clock; its node takes no pod that needs the topology",
		"node", nt.Name, "heartbeat", nt.Status.LastHeartbeatTime.Time, "ahead", ahead, "maxClockSkew", MaxClockSkew)
	if recorder != nil {
		node := &v1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: nt.Name, UID: types.UID(nt.Name)}
		recorder.Eventf(node, nil, v1.EventTypeWarning, EventReasonHeartbeatFromFuture, "Scheduling",
			"%s: heartbeat %s is %s ahead", ReasonHeartbeatFromFuture, nt.Status.LastHeartbeatTime.UTC().Format(time.RFC3339), ahead.Round(time.Second))
	}
}

// EventReasonHeartbeatFromFuture is the reason of the Warning event on a
// Node whose NodeTopology heartbeat is beyond MaxClockSkew ahead.
const EventReasonHeartbeatFromFuture = "HeartbeatFromFuture"

// waitingPods are the GPU pods that entered a scheduling cycle and have not
// been placed yet.
type waitingPods struct {
	mu   sync.Mutex
	pods map[types.UID]*v1.Pod
}

func (w *waitingPods) add(pod *v1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pods[pod.UID] = pod
}

func (w *waitingPods) remove(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.pods, uid)
}

func (w *waitingPods) activate(logger klog.Logger, activator fwk.PodActivator) {
	w.mu.Lock()
	if len(w.pods) == 0 {
		w.mu.Unlock()
		return
	}
	pods := make(map[string]*v1.Pod, len(w.pods))
	for _, p := range w.pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	w.mu.Unlock()
	logger.V(4).Info("Activating pods waiting on NodeTopology", "count", len(pods))
	activator.Activate(logger, pods)
}
