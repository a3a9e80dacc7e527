package v1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IslandPolicy says whether a multi-GPU pod must get its GPUs on one NVLink
// island: Required, Preferred or Ignore.
type IslandPolicy string

// PCIeLevel is a GPU-to-NIC PCIe distance, nearest first: PIX, PXB, PHB, NODE, SYS.
type PCIeLevel string

// NVLinkTopoScoreWeights weigh the parts of nvlinktopo's score.
type NVLinkTopoScoreWeights struct {
	// IslandFit rewards the node where the pod fills an island best.
	IslandFit *int32 `json:"islandFit,omitempty"`
	// NICProximity rewards closer NICs (PIX over PXB).
	NICProximity *int32 `json:"nicProximity,omitempty"`
	// NICBandwidth rewards more NIC bandwidth per GPU.
	NICBandwidth *int32 `json:"nicBandwidth,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// NVLinkTopoArgs configures the nvlinktopo plugin.
type NVLinkTopoArgs struct {
	metav1.TypeMeta `json:",inline"`

	// GPUResourceName is the extended resource a pod requests GPUs by.
	// Default: nvidia.com/gpu.
	GPUResourceName string `json:"gpuResourceName,omitempty"`
	// RDMAResourceNames are the extended resources that mark a pod as needing
	// RDMA. Default: rdma/rdma_shared_device_a, rdma/ib, nvidia.com/hostdev,
	// vpc.amazonaws.com/efa.
	RDMAResourceNames []string `json:"rdmaResourceNames,omitempty"`
	// IslandPolicy applies to pods that request more than one GPU.
	// Default: Required.
	IslandPolicy IslandPolicy `json:"islandPolicy,omitempty"`
	// MaxPCIeLevel is the farthest GPU-to-NIC level at which GPUDirect RDMA
	// is used. Default: PXB, where NCCL and UCX stop using it.
	MaxPCIeLevel PCIeLevel `json:"maxPCIeLevel,omitempty"`
	// MaxTopologyAge is how old a NodeTopology heartbeat may be before the
	// node is treated as having no topology. Default: 5m.
	MaxTopologyAge *metav1.Duration `json:"maxTopologyAge,omitempty"`
	// ScoreWeights weigh the parts of the score. Default: 3, 2, 1.
	ScoreWeights NVLinkTopoScoreWeights `json:"scoreWeights,omitempty"`
	// DRADeviceClassNames are the DeviceClasses (resource.k8s.io) whose
	// ResourceClaim requests ask for GPUs. Default: gpu.nvidia.com, the
	// class of NVIDIA's DRA driver.
	DRADeviceClassNames []string `json:"draDeviceClassNames,omitempty"`
	// DRADriverName is the DRA driver whose ResourceSlices publish the
	// GPUs. Default: gpu.nvidia.com.
	DRADriverName string `json:"draDriverName,omitempty"`
	// DRARDMADeviceClassNames are the DeviceClasses (resource.k8s.io) whose
	// ResourceClaim requests ask for RDMA NICs (for example DRANET's
	// `dranet`, or the class of NVIDIA's DRA driver for SR-IOV): a pod that
	// claims a device of one needs GPUDirect RDMA, as a pod requesting one
	// of rdmaResourceNames does. Read only while draDeviceClassNames is not
	// empty. Default: none, since a NIC class does not say whether its
	// devices are used for RDMA.
	DRARDMADeviceClassNames []string `json:"draRDMADeviceClassNames,omitempty"`
}

// TopologyLevel is one level of the network and NVLink hierarchy.
type TopologyLevel struct {
	// Name is a short name: zone, spine, leaf, nvlink-domain.
	Name string `json:"name"`
	// NodeLabel is the node label key that holds a node's domain at this level.
	NodeLabel string `json:"nodeLabel"`
	// Bandwidth is the per-stream KV-transfer bandwidth in bytes per second
	// when two pods share this level and no finer one, e.g. "50G".
	Bandwidth resource.Quantity `json:"bandwidth"`
	// Global says the level's values are unique across the cluster (an
	// NVLink domain's clique or rack id): nodes with the same value share the
	// domain whatever their coarser levels say. Otherwise a value is matched
	// under its coarser levels, as Kueue matches a leaf under its spine.
	Global bool `json:"global,omitempty"`
}

// SameNodePolicy says whether a prefill and its decode may share a node:
// Prefer, Allow or Forbid.
type SameNodePolicy string

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// PDAffinityArgs configures the pdaffinity plugin.
type PDAffinityArgs struct {
	metav1.TypeMeta `json:",inline"`

	// LevelPreset names a built-in level list, used when Levels is empty.
	// Default: tandem.
	LevelPreset string `json:"levelPreset,omitempty"`
	// Levels, coarse to fine, override LevelPreset.
	Levels []TopologyLevel `json:"levels,omitempty"`
	// SameNode is the same-node pairing policy. Default: Prefer.
	SameNode SameNodePolicy `json:"sameNode,omitempty"`
	// LabelPresets name the serving stacks (aibrix, lws, dynamo, llm-d)
	// whose pod labels are read as role and group besides tandem's own.
	// Default (unset): every known preset; an empty list: tandem's labels only.
	LabelPresets []string `json:"labelPresets,omitempty"`
	// GPUResourceName is the extended resource pods request GPUs by.
	// Default: nvidia.com/gpu.
	GPUResourceName string `json:"gpuResourceName,omitempty"`
	// PlacementLabels also stamps the tandem.dev/nvlink-domain, leaf and
	// spine labels on each bound P/D pod, a second write per pod; the
	// tandem.dev/placement annotation travels on the binding itself.
	PlacementLabels bool `json:"placementLabels,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GangArgs configures the gang plugin, which places the pods of a PodGroup
// (scheduling.x-k8s.io/v1alpha1) all-or-nothing.
type GangArgs struct {
	metav1.TypeMeta `json:",inline"`

	// PermitWaitingTimeSeconds is how long a placed pod waits at Permit for
	// the rest of its group when the PodGroup sets no scheduleTimeoutSeconds.
	// Default: 60.
	PermitWaitingTimeSeconds *int64 `json:"permitWaitingTimeSeconds,omitempty"`
	// PodGroupBackoffSeconds keeps a group whose attempt failed out of
	// scheduling for this long. Default: 0 (retry at once).
	PodGroupBackoffSeconds *int64 `json:"podGroupBackoffSeconds,omitempty"`
	// PodGroupRejectPercentage (0-100): a pod that fails filtering rejects
	// its group's pods waiting at Permit only when more than this percentage
	// of minMember is still unplaced; 0 rejects on any failure, 100 never.
	// Default: 10.
	PodGroupRejectPercentage *int32 `json:"podGroupRejectPercentage,omitempty"`
}
