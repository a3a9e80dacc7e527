package nvlinktopo

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// ledger remembers which GPUs the scheduler gave each pod it placed, until
// the agent's report shows the kubelet's own allocation for that pod. Between
// the two, the report alone would show those GPUs free, and two pods could
// be promised the same NVLink island.
type ledger struct {
	mu     sync.RWMutex
	byNode map[string]map[types.UID]ledgerEntry
	nodeOf map[types.UID]string
}

type ledgerEntry struct {
	// pod is namespace/name, as the report names it.
	pod  string
	gpus []int32
}

func newLedger() *ledger {
	return &ledger{byNode: map[string]map[types.UID]ledgerEntry{}, nodeOf: map[types.UID]string{}}
}

func (l *ledger) add(uid types.UID, pod, node string, gpus []int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(uid)
	if l.byNode[node] == nil {
		l.byNode[node] = map[types.UID]ledgerEntry{}
	}
	l.byNode[node][uid] = ledgerEntry{pod: pod, gpus: gpus}
	l.nodeOf[uid] = node
}

func (l *ledger) remove(uid types.UID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(uid)
}

func (l *ledger) removeLocked(uid types.UID) {
	node, ok := l.nodeOf[uid]
	if !ok {
		return
	}
	delete(l.byNode[node], uid)
	if len(l.byNode[node]) == 0 {
		delete(l.byNode, node)
	}
	delete(l.nodeOf, uid)
}

// markUsed adds the node's ledger entries that the report does not reflect
// yet to used, and forgets those it does.
func (l *ledger) markUsed(node string, gpus *topology.NodeGPUs, used topology.Used, allocations []topologyv1alpha1.GPUAllocation) {
	l.mu.RLock()
	entries := l.byNode[node]
	if len(entries) == 0 {
		l.mu.RUnlock()
		return
	}
	var reflected []types.UID
	for uid, e := range entries {
		if reportedPod(allocations, e.pod) {
			reflected = append(reflected, uid)
			continue
		}
		gpus.Mark(used, e.gpus)
	}
	l.mu.RUnlock()
	if len(reflected) > 0 {
		l.mu.Lock()
		for _, uid := range reflected {
			l.removeLocked(uid)
		}
		l.mu.Unlock()
	}
}

func (l *ledger) size() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.nodeOf)
}

func reportedPod(allocations []topologyv1alpha1.GPUAllocation, pod string) bool {
	for _, a := range allocations {
		if a.Pod == pod {
			return true
		}
	}
	return false
}
