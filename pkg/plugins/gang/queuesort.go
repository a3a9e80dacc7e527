package gang

import (
	"time"

	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"
)

// Less orders the scheduling queue: higher priority first; then the
// earlier of the PodGroup's creation (or, once the group failed, its last
// failure) and, for a pod in no group, the pod's first attempt; then
// namespace and name, so that a group's pods follow one another. It reads
// no object and copies nothing: a group's times are kept in a map.
func (g *Gang) Less(a, b fwk.QueuedPodInfo) bool {
	pa, pb := a.GetPodInfo().GetPod(), b.GetPodInfo().GetPod()
	if x, y := corev1helpers.PodPriority(pa), corev1helpers.PodPriority(pb); x != y {
		return x > y
	}
	ta, tb := g.queueTime(a), g.queueTime(b)
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if pa.Namespace != pb.Namespace {
		return pa.Namespace < pb.Namespace
	}
	return pa.Name < pb.Name
}

func (g *Gang) queueTime(qpi fwk.QueuedPodInfo) time.Time {
	if k, ok := keyOf(qpi.GetPodInfo().GetPod()); ok {
		if t, ok := g.groups.sortTime(k); ok {
			return t
		}
	}
	if t := qpi.GetInitialAttemptTimestamp(); t != nil {
		return *t
	}
	return qpi.GetTimestamp()
}
