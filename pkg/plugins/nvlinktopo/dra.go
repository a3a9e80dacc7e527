package nvlinktopo

import (
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// requestOn is the pod's request on node: a ResourceClaim for all of a
// node's GPUs asks for as many as the DRA driver publishes there.
func (pl *NVLinkTopo) requestOn(s *preFilterState, node string) topology.GPURequest {
	req := s.request
	if s.allOfNode && pl.dra != nil {
		req.Count += pl.dra.NodeGPUs(node)
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
