package pdaffinity

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// assumedPods are the group members this scheduler reserved a node for and
// the pod informer does not show bound yet: the informer's view plus these
// is what the scheduler's snapshot would say, without walking it.
type assumedPods struct {
	mu    sync.Mutex
	byUID map[types.UID]string
}

func newAssumedPods() *assumedPods { return &assumedPods{byUID: map[types.UID]string{}} }

func (a *assumedPods) add(pod *v1.Pod, node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byUID[pod.UID] = node
}

func (a *assumedPods) remove(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byUID, uid)
}

// nodeOf is the node the pod is bound to, or reserved on, or "".
func (a *assumedPods) nodeOf(pod *v1.Pod) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pod.Spec.NodeName != "" {
		// The informer has the binding: the reservation is history.
		delete(a.byUID, pod.UID)
		return pod.Spec.NodeName
	}
	return a.byUID[pod.UID]
}
