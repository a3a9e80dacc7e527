package nvlinktopo

import (
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// requestOn is the pod's request on node: a ResourceClaim for all of a
// node's GPUs asks for as many as the DRA driver publishes there. When the
// pod's GPUs all come from claims that ask by class and count alone, the
// DynamicResources plugin's allocator will take the first free GPUs in the
// node's ResourceSlice order, islands or not: the fit is judged on those
// (no scheduler plugin can make the allocator take others), so a node where
// that pick would split the claim across NVLink islands is not chosen for
// it.
func (pl *NVLinkTopo) requestOn(s *preFilterState, node string) topology.GPURequest {
	req := s.request
	if pl.dra == nil {
		return req
	}
	if s.allOfNode {
		req.Count += pl.dra.NodeGPUs(node)
	}
	if s.firstFit {
		req.AllocationOrder = pl.dra.AllocationOrder(node)
	}
	return req
}

// draEvents requeue a pod rejected for a claim not yet created or
// resolvable, or for GPUs a claim held: a claim created, allocated or
// deallocated, a ResourceSlice published, a pod's claim made from its
// template.
func (pl *NVLinkTopo) draEvents() []fwk.ClusterEventWithHint {
	if pl.dra == nil {
		return nil
	}
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.ResourceClaim, ActionType: fwk.Add | fwk.Update | fwk.Delete}},
		{Event: fwk.ClusterEvent{Resource: fwk.ResourceSlice, ActionType: fwk.Add | fwk.Update}},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.UpdatePodGeneratedResourceClaim}},
	}
}
