package v1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults, exported so that tests and docs quote the same values.
const (
	DefaultGPUResourceName = "nvidia.com/gpu"
	// NVIDIA's DRA driver (k8s-dra-driver-gpu) names its driver and its
	// GPU DeviceClass gpu.nvidia.com.
	DefaultDRADeviceClassName              = "gpu.nvidia.com"
	DefaultDRADriverName                   = "gpu.nvidia.com"
	DefaultIslandPolicy       IslandPolicy = "Required"
	// NCCL and UCX use GPUDirect RDMA only at or below PXB.
	DefaultMaxPCIeLevel   PCIeLevel      = "PXB"
	DefaultMaxTopologyAge                = 5 * time.Minute
	DefaultLevelPreset                   = "tandem"
	DefaultSameNode       SameNodePolicy = "Prefer"

	DefaultIslandFitWeight    int32 = 3
	DefaultNICProximityWeight int32 = 2
	DefaultNICBandwidthWeight int32 = 1

	// The gang plugin's defaults are scheduler-plugins' Coscheduling's.
	DefaultPermitWaitingTimeSeconds int64 = 60
	DefaultPodGroupBackoffSeconds   int64 = 0
	DefaultPodGroupRejectPercentage int32 = 10
)

// DefaultRDMAResourceNames are the extended resources the common RDMA device
// plugins advertise: the shared-device plugin, the SR-IOV plugin's default
// InfiniBand pool, the NVIDIA Network Operator's host-device pool, and AWS's
// EFA device plugin.
func DefaultRDMAResourceNames() []string {
	return []string{"rdma/rdma_shared_device_a", "rdma/ib", "nvidia.com/hostdev", "vpc.amazonaws.com/efa"}
}

// SetDefaults_NVLinkTopoArgs fills the unset fields of NVLinkTopoArgs.
func SetDefaults_NVLinkTopoArgs(args *NVLinkTopoArgs) {
	if args.GPUResourceName == "" {
		args.GPUResourceName = DefaultGPUResourceName
	}
	if args.RDMAResourceNames == nil {
		args.RDMAResourceNames = DefaultRDMAResourceNames()
	}
	if args.IslandPolicy == "" {
		args.IslandPolicy = DefaultIslandPolicy
	}
	if args.MaxPCIeLevel == "" {
		args.MaxPCIeLevel = DefaultMaxPCIeLevel
	}
	if args.MaxTopologyAge == nil {
		args.MaxTopologyAge = &metav1.Duration{Duration: DefaultMaxTopologyAge}
	}
	if args.DRADeviceClassNames == nil {
		args.DRADeviceClassNames = []string{DefaultDRADeviceClassName}
	}
	if args.DRADriverName == "" {
		args.DRADriverName = DefaultDRADriverName
	}
	setWeight(&args.ScoreWeights.IslandFit, DefaultIslandFitWeight)
	setWeight(&args.ScoreWeights.NICProximity, DefaultNICProximityWeight)
	setWeight(&args.ScoreWeights.NICBandwidth, DefaultNICBandwidthWeight)
}

func setWeight(w **int32, v int32) {
	if *w == nil {
		*w = &v
	}
}

// SetDefaults_PDAffinityArgs fills the unset fields of PDAffinityArgs.
func SetDefaults_PDAffinityArgs(args *PDAffinityArgs) {
	if args.LevelPreset == "" && len(args.Levels) == 0 {
		args.LevelPreset = DefaultLevelPreset
	}
	if args.SameNode == "" {
		args.SameNode = DefaultSameNode
	}
	if args.GPUResourceName == "" {
		args.GPUResourceName = DefaultGPUResourceName
	}
}

// SetDefaults_GangArgs fills the unset fields of GangArgs.
func SetDefaults_GangArgs(args *GangArgs) {
	if args.PermitWaitingTimeSeconds == nil {
		v := DefaultPermitWaitingTimeSeconds
		args.PermitWaitingTimeSeconds = &v
	}
	if args.PodGroupBackoffSeconds == nil {
		v := DefaultPodGroupBackoffSeconds
		args.PodGroupBackoffSeconds = &v
	}
	if args.PodGroupRejectPercentage == nil {
		v := DefaultPodGroupRejectPercentage
		args.PodGroupRejectPercentage = &v
	}
}
