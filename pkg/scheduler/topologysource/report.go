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
	if st.GPUDirectRDMA.GPUs != nil {
		r.GPUDirectGPUs = make([]topology.ReportedGPUDirect, 0, len(st.GPUDirectRDMA.GPUs))
		for _, g := range st.GPUDirectRDMA.GPUs {
			r.GPUDirectGPUs = append(r.GPUDirectGPUs, topology.ReportedGPUDirect{GPU: g.GPU, Ready: g.Ready, Blocking: g.BlockingChecks})
		}
	}
	for _, g := range st.GPUs {
		r.GPUs = append(r.GPUs, topology.ReportedGPU{Index: g.Index, UUID: g.UUID, PCIBusID: g.PCIBusID, Island: g.Island, MIG: g.MIGMode == topologyv1alpha1.MIGEnabled})
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
	r.Malformed = contradiction(st)
	return r
}

// contradiction names the first part of the status that contradicts
// another in what the model does not carry: the NVLink islands and peers
// against each GPU's island, and GPUDirect readiness against its checks.
// The CRD rejects these on write; objects stored before its rules, or
// written where the CRD is older, are caught here. The model checks the
// rest (duplicate GPUs, PCIe paths, allocations) as it compiles the report.
func contradiction(st *topologyv1alpha1.NodeTopologyStatus) error {
	if st.GPUDirectRDMA.Ready {
		for i, c := range st.GPUDirectRDMA.Checks {
			if c.Result == topologyv1alpha1.CheckFail {
				return fmt.Errorf("status.gpuDirectRDMA.checks[%d]: check %s failed but ready is true", i, c.Name)
			}
		}
	}
	island := make(map[int32]int32, len(st.GPUs))
	for _, g := range st.GPUs {
		island[g.Index] = g.Island
	}
	for i, g := range st.GPUs {
		for _, p := range g.NVLinkPeers {
			switch peerIsland, ok := island[p]; {
			case p == g.Index:
				return fmt.Errorf("status.gpus[%d].nvlinkPeers: GPU %d lists itself", i, g.Index)
			case !ok:
				return fmt.Errorf("status.gpus[%d].nvlinkPeers: GPU %d is not in status.gpus", i, p)
			case peerIsland != g.Island:
				return fmt.Errorf("status.gpus[%d].nvlinkPeers: GPU %d is in island %d, GPU %d in island %d", i, p, peerIsland, g.Index, g.Island)
			}
		}
	}
	return nil
}
