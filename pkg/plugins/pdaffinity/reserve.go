package pdaffinity

import (
	"context"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
)

// Reserve records a unit's pod as placed, for the plans of its unit's other
// pods.
func (pl *PDAffinity) Reserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	s, err := readState(cycleState)
	if err != nil {
		return nil
	}
	pl.assumed.add(pod, node)

	if s.planKey != "" {
		pl.reservedAt(pod, s.planKey, node)
	}
	return nil
}

// Unreserve forgets the reservation.
func (pl *PDAffinity) Unreserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) {
	s, err := readState(cycleState)
	if err != nil {
		return
	}
	pl.assumed.remove(pod.UID)
	if s.planKey != "" {
		pl.unreserved(pod, s.planKey)
	}
}
