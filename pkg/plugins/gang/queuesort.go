package gang

import (
	"time"

	fwk "k8s.io/kube-scheduler/framework"
)

// Less orders the scheduling queue: higher priority first; then the
// earlier of the PodGroup's creation (or, once the group failed, its last
// failure) and, for a pod in no group, the pod's first attempt; then
// namespace and name, so that a group's pods follow one another. It reads
// no object and copies nothing: a group's times are kept in a map.
//
// The queue holds entities: a pod, or, with kube-scheduler's GenericWorkload
// gate on, an in-tree pod group (scheduling.k8s.io) scheduled as one. Such a
// group has no scheduling.x-k8s.io PodGroup, so it sorts as a pod in no
// group would: by priority, first attempt, namespace and name.
func (g *Gang) Less(a, b fwk.QueuedEntityInfo) bool {
	if x, y := a.GetPriority(), b.GetPriority(); x != y {
		return x > y
	}
	ta, tb := g.queueTime(a), g.queueTime(b)
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	nsA, nameA := entityName(a)
	nsB, nameB := entityName(b)
	if nsA != nsB {
		return nsA < nsB
	}
	return nameA < nameB
}

// queuedPod is a pod's entry in the scheduling queue.
type queuedPod interface {
	GetPodInfo() fwk.PodInfo
}

// namedEntity is an entry in the scheduling queue that names its object:
// both a pod's entry and an in-tree pod group's do.
type namedEntity interface {
	GetNamespace() string
	GetName() string
}

func entityName(e fwk.QueuedEntityInfo) (namespace, name string) {
	if q, ok := e.(queuedPod); ok {
		p := q.GetPodInfo().GetPod()
		return p.Namespace, p.Name
	}
	if n, ok := e.(namedEntity); ok {
		return n.GetNamespace(), n.GetName()
	}
	return "", ""
}

func (g *Gang) queueTime(e fwk.QueuedEntityInfo) time.Time {
	if q, ok := e.(queuedPod); ok {
		if k, ok := keyOf(q.GetPodInfo().GetPod()); ok {
			if t, ok := g.groups.sortTime(k); ok {
				return t
			}
		}
	}
	if t := e.GetInitialAttemptTimestamp(); t != nil {
		return *t
	}
	return e.GetTimestamp()
}
