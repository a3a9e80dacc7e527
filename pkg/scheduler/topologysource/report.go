package topologysource

import (
	"fmt"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// ReportOf is the adapter from the NodeTopology API to the placement model:
// what the node's agent reports, in the model's terms. Lists keep their
// order, so the model's errors name the NodeTopology field they come from.
func ReportOf(nt *topologyv1alpha1.NodeTopology) *topology.NodeReport {
	st := &nt.Status
	r := &topology.NodeReport{
		GPUs:           make([]topology.ReportedGPU, 0, len(st.GPUs)),
		NICs:           make([]topology.ReportedNIC, 0, len(st.NICs)),
		PCIePaths:      make([]topology.ReportedPCIePath, 0, len(st.PCIePaths)),
		GPUDirectReady: st.GPUDirectRDMA.Ready,
		Allocations:    make([]topology.Allocation, 0, len(st.GPUAllocations)),
		Heartbeat:      st.LastHeartbeatTime.Time,
	}
	if !r.GPUDirectReady {
		for _, c := range st.GPUDirectRDMA.Checks {
			if c.Result != topologyv1alpha1.CheckPass {
				r.GPUDirectReason = fmt.Sprintf("GPUDirect RDMA check %s: %s %s", c.Name, c.Result, c.Reason)
				break
			}
		}
	}
	for _, g := range st.GPUs {
		r.GPUs = append(r.GPUs, topology.ReportedGPU{Index: g.Index, UUID: g.UUID, Island: g.Island, MIG: g.MIGMode == topologyv1alpha1.MIGEnabled})
	}
	for _, n := range st.NICs {
		r.NICs = append(r.NICs, topology.ReportedNIC{Name: n.Name, Active: n.State == topologyv1alpha1.PortActive, RateGbps: n.RateGbps})
	}
	for _, p := range st.PCIePaths {
		r.PCIePaths = append(r.PCIePaths, topology.ReportedPCIePath{GPU: p.GPU, NIC: p.NIC, Level: string(p.Level)})
	}
	for _, a := range st.GPUAllocations {
		r.Allocations = append(r.Allocations, topology.Allocation{Pod: a.Pod, GPUs: a.GPUs})
	}
	return r
}
