package topologysource

import fwk "k8s.io/kube-scheduler/framework"

// PlanStateKey is the cycle-state key under which PDAffinity tells the other
// plugins that it placed the pod by a unit's (or a pool chunk's) plan.
// The plan already chose the node by island fit, tightest first, with every
// pod of the unit in view; NVLinkTopo then skips its own tight-fit Score, so
// that a fallback node that fits one pod tighter does not outscore the
// planned node and take the room the plan left for the unit's other pods.
const PlanStateKey fwk.StateKey = "tandem.dev/unit-plan"

// PlanState is the node the pod is planned on.
type PlanState struct{ Node string }

// Clone returns the state itself: it is not changed after PreFilter.
func (s *PlanState) Clone() fwk.StateData { return s }

// Planned says whether PDAffinity planned the pod in this cycle.
func Planned(cycleState fwk.CycleState) bool {
	_, err := cycleState.Read(PlanStateKey)
	return err == nil
}
