package topology

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Names of the built-in level lists.
const (
	PresetTandem      = "tandem"
	PresetGKE         = "gke"
	PresetEKS         = "eks"
	PresetTopograph   = "topograph"
	PresetTopographV0 = "topograph-v0"
	PresetGFD         = "gfd"
	PresetCoreWeave   = "coreweave"
	PresetOCI         = "oci"
	PresetNebius      = "nebius"
)

// presets builds each preset afresh, so callers may modify what they get.
// Every preset's NVLink-domain level is global: its values are the agent's
// (the node name, or a fabric's cluster UUID and clique id), GFD's clique
// ("<cluster UUID>.<clique id>") or a provider's domain id, each unique in
// the cluster by construction.
func presets() map[string]func() Levels {
	return map[string]func() Levels{
		PresetTandem: DefaultLevels,

		// GKE labels GPU nodes in compact placement with the block and
		// sub-block of the reservation they run in; Kueue's GKE topology
		// uses the same keys. The NVLink-domain level comes from the tandem
		// agent, which reads it from the GPUs themselves (on A4X the
		// sub-block is also the NVL72 rack).
		PresetGKE: func() Levels {
			return Levels{
				{Name: LevelZone, Key: LabelZone, Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: "cloud.google.com/gce-topology-block", Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: "cloud.google.com/gce-topology-subblock", Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: LabelNVLinkDomain, Bandwidth: nvlinkBandwidth, Global: true},
			}
		},

		// EKS labels nodes with the EC2 instance topology: layer 1 is the
		// network node farthest from the instance, layer 3 the one it
		// attaches to. Instance types with a fourth layer get
		// network-node-layer-4 as well, which this preset ignores, so on
		// them "leaf" is one switch above the real one. The NVLink-domain
		// level comes from the tandem agent.
		PresetEKS: func() Levels {
			return Levels{
				{Name: LevelZone, Key: LabelZone, Bandwidth: zoneBandwidth},
				{Name: "network-layer-1", Key: "topology.k8s.aws/network-node-layer-1", Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: "topology.k8s.aws/network-node-layer-2", Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: "topology.k8s.aws/network-node-layer-3", Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: LabelNVLinkDomain, Bandwidth: nvlinkBandwidth, Global: true},
			}
		},

		// NVIDIA Topograph's Kubernetes engine, with the default keys of its
		// current source (KeyFabricTierPrefix, KeyTopologyXclrDomain):
		// fabric tier 0 is the switch closest to the node. The keys are
		// configurable in its Helm chart; clusters that changed them list
		// their levels explicitly.
		PresetTopograph: func() Levels {
			return Levels{
				{Name: LevelZone, Key: LabelZone, Bandwidth: zoneBandwidth},
				{Name: "core", Key: "fabric.topograph.run/tier-2", Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: "fabric.topograph.run/tier-1", Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: "fabric.topograph.run/tier-0", Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: "accelerator.topograph.run/domain", Bandwidth: nvlinkBandwidth, Global: true},
			}
		},

		// Topograph releases before the topograph.run keys labelled nodes
		// under network.topology.nvidia.com, tier 0 closest to the node.
		PresetTopographV0: func() Levels {
			return Levels{
				{Name: LevelZone, Key: LabelZone, Bandwidth: zoneBandwidth},
				{Name: "core", Key: "network.topology.nvidia.com/tier-2", Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: "network.topology.nvidia.com/tier-1", Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: "network.topology.nvidia.com/tier-0", Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: "network.topology.nvidia.com/accelerator", Bandwidth: nvlinkBandwidth, Global: true},
			}
		},

		// CoreWeave labels nodes on its InfiniBand and RoCE backend fabrics
		// with the fabric and the leaf group (the leaves serving a common
		// set of nodes, rail-optimised), InfiniBand nodes also with the
		// superpod; GB200 NVL72 nodes carry their NVLink domain.
		PresetCoreWeave: func() Levels {
			return Levels{
				{Name: "fabric", Key: "backend.coreweave.cloud/fabric", Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: "ib.coreweave.cloud/superpod", Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: "backend.coreweave.cloud/leafgroup", Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: "ds.coreweave.com/nvlink.domain", Bandwidth: nvlinkBandwidth, Global: true},
			}
		},

		// OKE labels bare-metal RDMA nodes with their HPC island, network
		// block and local block (the nodes behind one leaf), the levels
		// Kueue's OCI topology uses. The NVLink domain comes from the agent.
		PresetOCI: func() Levels {
			return Levels{
				{Name: "hpc-island", Key: "oci.oraclecloud.com/rdma.hpc_island_id", Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: "oci.oraclecloud.com/rdma.network_block_id", Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: "oci.oraclecloud.com/rdma.local_block_id", Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: LabelNVLinkDomain, Bandwidth: nvlinkBandwidth, Global: true},
			}
		},

		// Nebius labels GPU nodes with their high-speed network domain and
		// InfiniBand tiers, tier 0 being the multi-node NVLink domain where
		// there is one.
		PresetNebius: func() Levels {
			return Levels{
				{Name: "gpu-cluster", Key: "topology.nebius.com/gpu-cluster-id", Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: "topology.nebius.com/tier-2", Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: "topology.nebius.com/tier-1", Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: "topology.nebius.com/tier-0", Bandwidth: nvlinkBandwidth, Global: true},
			}
		},

		// NVIDIA GPU Feature Discovery (GPU Operator) sets nvidia.com/gpu.clique
		// to "<cluster UUID>.<clique id>" on multi-node NVLink systems such
		// as GB200 NVL72. The network levels come from the tandem agent.
		PresetGFD: func() Levels {
			return Levels{
				{Name: LevelZone, Key: LabelZone, Bandwidth: zoneBandwidth},
				{Name: LevelSpine, Key: LabelSpine, Bandwidth: spineBandwidth},
				{Name: LevelLeaf, Key: LabelLeaf, Bandwidth: leafBandwidth},
				{Name: LevelNVLinkDomain, Key: "nvidia.com/gpu.clique", Bandwidth: nvlinkBandwidth, Global: true},
			}
		},
	}
}

// PresetLevels returns the built-in level list called name.
func PresetLevels(name string) (Levels, error) {
	build, ok := presets()[name]
	if !ok {
		return nil, fmt.Errorf("unknown level preset %q; known presets are %s", name, strings.Join(PresetNames(), ", "))
	}
	return build(), nil
}

// PresetNames returns the names PresetLevels accepts, sorted.
func PresetNames() []string {
	return slices.Sorted(maps.Keys(presets()))
}
