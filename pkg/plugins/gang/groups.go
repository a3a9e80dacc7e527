package gang

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// groups is what Gang knows of each PodGroup besides the object itself,
// under one lock: read by the queue's Less, written by the extension points
// and the informers' handlers.
type groups struct {
	mu sync.RWMutex
	// created is each PodGroup's creation time, kept by the PodGroup
	// informer's handler so that Less reads no object.
	created map[groupKey]time.Time
	// failed is the time of the group's last failed attempt; cleared when
	// the group reaches quorum.
	failed map[groupKey]time.Time
	// backoffUntil keeps a failed group out of scheduling until then.
	backoffUntil map[groupKey]time.Time
	// capacityUntil: the group's minResources fit the cluster, as checked
	// at PreFilter, until then.
	capacityUntil map[groupKey]time.Time
	// assigned are the group's pods reserved by this scheduler or bound.
	assigned map[groupKey]sets.Set[types.UID]
}

func newGroups() *groups {
	return &groups{
		created:       map[groupKey]time.Time{},
		failed:        map[groupKey]time.Time{},
		backoffUntil:  map[groupKey]time.Time{},
		capacityUntil: map[groupKey]time.Time{},
		assigned:      map[groupKey]sets.Set[types.UID]{},
	}
}

// sortTime is when the group entered the queue, for ordering: its last
// failure if it failed since it last reached quorum (so a failing group
// does not hold the head of the queue), else its PodGroup's creation; ok is
// false when neither is known.
func (s *groups) sortTime(k groupKey) (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t, ok := s.failed[k]; ok {
		return t, true
	}
	t, ok := s.created[k]
	return t, ok
}

func (s *groups) setCreated(k groupKey, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created[k] = t
}

// forget drops what is kept of a deleted PodGroup but its assigned pods,
// which stay assigned while they exist.
func (s *groups) forget(k groupKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.created, k)
	delete(s.failed, k)
	delete(s.backoffUntil, k)
	delete(s.capacityUntil, k)
}

func (s *groups) markFailed(k groupKey, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed[k] = now
}

// lastFailure is the time of the group's last failure since it last reached
// quorum.
func (s *groups) lastFailure(k groupKey) (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.failed[k]
	return t, ok
}

func (s *groups) clearFailed(k groupKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.failed, k)
}

// backOff keeps the group out until until; started is false when it was
// already backed off at now (a backoff is not extended).
func (s *groups) backOff(k groupKey, now, until time.Time) (started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.backoffUntil[k]; ok && now.Before(cur) {
		return false
	}
	s.backoffUntil[k] = until
	return true
}

// backedOff says until when the group is backed off, if it is at now.
func (s *groups) backedOff(k groupKey, now time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.backoffUntil[k]
	if !ok {
		return time.Time{}, false
	}
	if !now.Before(until) {
		delete(s.backoffUntil, k)
		return time.Time{}, false
	}
	return until, true
}

func (s *groups) capacityChecked(k groupKey, now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	until, ok := s.capacityUntil[k]
	return ok && now.Before(until)
}

func (s *groups) setCapacityChecked(k groupKey, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacityUntil[k] = until
}

func (s *groups) dropCapacity(k groupKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.capacityUntil, k)
}

// assign counts the pod as placed in its group; added is false when it
// already was.
func (s *groups) assign(k groupKey, uid types.UID) (count int, added bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.assigned[k]
	if !ok {
		set = sets.New[types.UID]()
		s.assigned[k] = set
	}
	if set.Has(uid) {
		return set.Len(), false
	}
	set.Insert(uid)
	return set.Len(), true
}

func (s *groups) unassign(k groupKey, uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.assigned[k]
	if !ok {
		return
	}
	set.Delete(uid)
	if set.Len() == 0 {
		delete(s.assigned, k)
	}
}

func (s *groups) assignedCount(k groupKey) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.assigned[k].Len()
}
