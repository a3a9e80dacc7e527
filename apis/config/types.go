package config

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IslandPolicy says whether a multi-GPU pod must get its GPUs on one NVLink island.
type IslandPolicy string

const (
	IslandRequired  IslandPolicy = "Required"
	IslandPreferred IslandPolicy = "Preferred"
	IslandIgnore    IslandPolicy = "Ignore"
)

// PCIeLevel is a GPU-to-NIC PCIe distance, nearest first: PIX, PXB, PHB, NODE, SYS.
type PCIeLevel string

// NVLinkTopoScoreWeights weigh the parts of nvlinktopo's score.
type NVLinkTopoScoreWeights struct {
	// IslandFit rewards the node where the pod fills an island best.
	IslandFit int32
	// NICProximity rewards closer NICs (PIX over PXB).
	NICProximity int32
	// NICBandwidth rewards more NIC bandwidth per GPU.
	NICBandwidth int32
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// NVLinkTopoArgs configures the nvlinktopo plugin.
type NVLinkTopoArgs struct {
	metav1.TypeMeta

	// GPUResourceName is the extended resource a pod requests GPUs by.
	GPUResourceName string
	// RDMAResourceNames are the extended resources that mark a pod as needing RDMA.
	RDMAResourceNames []string
	// IslandPolicy applies to pods that request more than one GPU.
	IslandPolicy IslandPolicy
	// MaxPCIeLevel is the farthest GPU-to-NIC level at which GPUDirect RDMA is used.
	MaxPCIeLevel PCIeLevel
	// MaxTopologyAge is how old a NodeTopology heartbeat may be before the
	// node is treated as having no topology.
	MaxTopologyAge metav1.Duration
	// ScoreWeights weigh the parts of the score.
	ScoreWeights NVLinkTopoScoreWeights
	// DRADeviceClassNames are the DeviceClasses whose ResourceClaim
	// requests ask for GPUs.
	DRADeviceClassNames []string
	// DRADriverName is the DRA driver whose ResourceSlices publish the GPUs.
	DRADriverName string
	// DRARDMADeviceClassNames are the DeviceClasses whose ResourceClaim
	// requests ask for RDMA NICs; a pod claiming one needs GPUDirect RDMA,
	// as one requesting an RDMAResourceNames resource does.
	DRARDMADeviceClassNames []string
}

// TopologyLevel is one level of the network and NVLink hierarchy.
type TopologyLevel struct {
	// Name is a short name: zone, spine, leaf, nvlink-domain.
	Name string
	// NodeLabel is the node label key that holds a node's domain at this level.
	NodeLabel string
	// Bandwidth is the per-stream KV-transfer bandwidth in bytes per second
	// when two pods share this level and no finer one.
	Bandwidth resource.Quantity
	// Global says the level's values are unique across the cluster.
	Global bool
}

// SameNodePolicy says whether a prefill and its decode may share a node.
type SameNodePolicy string

const (
	SameNodePrefer SameNodePolicy = "Prefer"
	SameNodeAllow  SameNodePolicy = "Allow"
	SameNodeForbid SameNodePolicy = "Forbid"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// PDAffinityArgs configures the pdaffinity plugin.
type PDAffinityArgs struct {
	metav1.TypeMeta

	// LevelPreset names a built-in level list (tandem, gke, eks, ...). Used
	// when Levels is empty.
	LevelPreset string
	// Levels, coarse to fine, override LevelPreset.
	Levels []TopologyLevel
	// SameNode is the same-node pairing policy.
	SameNode SameNodePolicy
	// LabelPresets name the serving stacks whose pod labels are read as role
	// and group besides tandem's own; nil means every known preset.
	LabelPresets []string
	// GPUResourceName is the extended resource pods request GPUs by; the
	// first pod of a unit looks ahead at free GPUs per domain.
	GPUResourceName string
	// PlacementLabels also stamps the placement labels on each bound P/D
	// pod, a second write per pod.
	PlacementLabels bool
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GangArgs configures the gang plugin, which places the pods of a PodGroup
// (scheduling.x-k8s.io/v1alpha1) all-or-nothing.
type GangArgs struct {
	metav1.TypeMeta

	// PermitWaitingTimeSeconds is how long a placed pod waits at Permit for
	// the rest of its group when the PodGroup sets no scheduleTimeoutSeconds.
	PermitWaitingTimeSeconds int64
	// PodGroupBackoffSeconds keeps a group that failed out of scheduling for
	// this long; 0 retries it at once.
	PodGroupBackoffSeconds int64
	// PodGroupRejectPercentage: a pod that fails filtering rejects its
	// group's waiting pods only when more than this percentage of minMember
	// is still unplaced.
	PodGroupRejectPercentage int32
}
