package clusterdesc

import (
	"sort"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

// shape is the hardware of one kind of node, as the agent would report it.
type shape struct {
	model     string
	memoryMiB int64
	gpus      int
	// islandSize is how many GPUs share an NVLink island; 1 means no NVLink.
	islandSize int
	// rackScale: the NVLink domain spans nodes (GB200 NVL72).
	rackScale   bool
	nics        int
	nicRateGbps int32
	linkLayer   topologyv1alpha1.LinkLayer
	// pcie is the PCIe level between GPU g and NIC n.
	pcie func(g, n int) topologyv1alpha1.PCIeLevel
	// socket of GPU g, for NUMA.
	socket func(g int) int32
	cpu    string
	memory string
}

func halves(of int) func(int) int32 {
	return func(i int) int32 { return int32(i * 2 / of) }
}

var shapes = map[string]shape{
	// HGX H100: eight SXM GPUs behind NVSwitch, one 400G ConnectX-7 per GPU on
	// the GPU's own PCIe switch, four GPU/NIC pairs per socket.
	"hgx-h100": {
		model: "NVIDIA H100 80GB HBM3", memoryMiB: 81559, gpus: 8, islandSize: 8,
		nics: 8, nicRateGbps: 400, linkLayer: topologyv1alpha1.LinkLayerInfiniBand,
		pcie: func(g, n int) topologyv1alpha1.PCIeLevel {
			switch {
			case g == n:
				return topologyv1alpha1.PCIeLevelPIX
			case g/4 == n/4:
				return topologyv1alpha1.PCIeLevelNODE
			}
			return topologyv1alpha1.PCIeLevelSYS
		},
		socket: halves(8), cpu: "192", memory: "2Ti",
	},
	// H100 NVL: PCIe cards joined in pairs by NVLink bridges, two NICs, one
	// per socket, sharing a PCIe switch with the first pair of their socket.
	"h100-nvl": {
		model: "NVIDIA H100 NVL", memoryMiB: 95830, gpus: 8, islandSize: 2,
		nics: 2, nicRateGbps: 400, linkLayer: topologyv1alpha1.LinkLayerRoCE,
		pcie: func(g, n int) topologyv1alpha1.PCIeLevel {
			switch {
			case g/4 != n:
				return topologyv1alpha1.PCIeLevelSYS
			case g%4 < 2:
				return topologyv1alpha1.PCIeLevelPXB
			}
			return topologyv1alpha1.PCIeLevelNODE
		},
		socket: halves(8), cpu: "128", memory: "1Ti",
	},
	// L40S: PCIe-only GPUs, no NVLink; both NICs hang off the first socket.
	"l40s": {
		model: "NVIDIA L40S", memoryMiB: 46068, gpus: 8, islandSize: 1,
		nics: 2, nicRateGbps: 200, linkLayer: topologyv1alpha1.LinkLayerRoCE,
		pcie: func(g, n int) topologyv1alpha1.PCIeLevel {
			if g < 4 {
				return topologyv1alpha1.PCIeLevelNODE
			}
			return topologyv1alpha1.PCIeLevelSYS
		},
		socket: halves(8), cpu: "128", memory: "1Ti",
	},
	// GB200 compute tray: four GPUs on the rack's NVLink fabric, one 400G NIC each.
	"gb200-tray": {
		model: "NVIDIA GB200", memoryMiB: 189471, gpus: 4, islandSize: 4, rackScale: true,
		nics: 4, nicRateGbps: 400, linkLayer: topologyv1alpha1.LinkLayerInfiniBand,
		pcie: func(g, n int) topologyv1alpha1.PCIeLevel {
			if g == n {
				return topologyv1alpha1.PCIeLevelPIX
			}
			return topologyv1alpha1.PCIeLevelSYS
		},
		socket: halves(4), cpu: "144", memory: "960Gi",
	},
	// An HGX board whose only NIC sits on the other socket, across the CPU
	// interconnect from every GPU: no GPUDirect RDMA at or below PXB.
	"hgx-h100-sys-nic": {
		model: "NVIDIA H100 80GB HBM3", memoryMiB: 81559, gpus: 8, islandSize: 8,
		nics: 1, nicRateGbps: 400, linkLayer: topologyv1alpha1.LinkLayerRoCE,
		pcie:   func(g, n int) topologyv1alpha1.PCIeLevel { return topologyv1alpha1.PCIeLevelSYS },
		socket: halves(8), cpu: "192", memory: "2Ti",
	},
	// A CPU node: no GPUs, no agent, no NodeTopology.
	"cpu": {cpu: "64", memory: "256Gi"},
}

// Shapes are the names of the hardware shapes a node group may have.
func Shapes() []string {
	names := make([]string, 0, len(shapes))
	for name := range shapes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
