package validation_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tandem-sched/tandem/apis/config"
	configv1 "github.com/tandem-sched/tandem/apis/config/v1"
	"github.com/tandem-sched/tandem/apis/config/validation"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// validNVLinkTopoArgs are the defaults, as the scheduler sees them after
// defaulting and conversion.
func validNVLinkTopoArgs() *config.NVLinkTopoArgs {
	return &config.NVLinkTopoArgs{
		GPUResourceName:   configv1.DefaultGPUResourceName,
		RDMAResourceNames: configv1.DefaultRDMAResourceNames(),
		IslandPolicy:      config.IslandPolicy(configv1.DefaultIslandPolicy),
		MaxPCIeLevel:      config.PCIeLevel(configv1.DefaultMaxPCIeLevel),
		MaxTopologyAge:    metav1.Duration{Duration: configv1.DefaultMaxTopologyAge},
		ScoreWeights: config.NVLinkTopoScoreWeights{
			IslandFit:    configv1.DefaultIslandFitWeight,
			NICProximity: configv1.DefaultNICProximityWeight,
			NICBandwidth: configv1.DefaultNICBandwidthWeight,
		},
	}
}

func TestValidateNVLinkTopoArgs(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*config.NVLinkTopoArgs)
		// wantErrs are substrings the error must contain; none means valid.
		wantErrs []string
	}{
		{
			name:   "defaults",
			modify: func(*config.NVLinkTopoArgs) {},
		},
		{
			name: "every island policy and PCIe level",
			modify: func(a *config.NVLinkTopoArgs) {
				a.IslandPolicy = config.IslandIgnore
				a.MaxPCIeLevel = "SYS"
			},
		},
		{
			name:   "preferred island policy",
			modify: func(a *config.NVLinkTopoArgs) { a.IslandPolicy = config.IslandPreferred },
		},
		{
			name:   "no RDMA resource names",
			modify: func(a *config.NVLinkTopoArgs) { a.RDMAResourceNames = nil },
		},
		{
			name: "weights at the bounds",
			modify: func(a *config.NVLinkTopoArgs) {
				a.ScoreWeights = config.NVLinkTopoScoreWeights{IslandFit: 100, NICProximity: 0, NICBandwidth: 0}
			},
		},
		{
			name:     "empty GPU resource name",
			modify:   func(a *config.NVLinkTopoArgs) { a.GPUResourceName = "" },
			wantErrs: []string{"args.gpuResourceName: Required value"},
		},
		{
			name:     "malformed GPU resource name",
			modify:   func(a *config.NVLinkTopoArgs) { a.GPUResourceName = "nvidia.com/gpu/h100" },
			wantErrs: []string{"args.gpuResourceName: Invalid value", "nvidia.com/gpu/h100"},
		},
		{
			name:     "empty RDMA resource name",
			modify:   func(a *config.NVLinkTopoArgs) { a.RDMAResourceNames = []string{"rdma/ib", ""} },
			wantErrs: []string{"args.rdmaResourceNames[1]: Required value"},
		},
		{
			name:     "malformed RDMA resource name",
			modify:   func(a *config.NVLinkTopoArgs) { a.RDMAResourceNames = []string{"rdma/ib", "rdma ib"} },
			wantErrs: []string{"args.rdmaResourceNames[1]: Invalid value", `"rdma ib"`},
		},
		{
			name:     "malformed DRA device class name",
			modify:   func(a *config.NVLinkTopoArgs) { a.DRADeviceClassNames = []string{"gpu.nvidia.com", "GPU Class"} },
			wantErrs: []string{"args.draDeviceClassNames[1]: Invalid value", `"GPU Class"`},
		},
		{
			name:     "duplicate DRA device class names",
			modify:   func(a *config.NVLinkTopoArgs) { a.DRADeviceClassNames = []string{"gpu.nvidia.com", "gpu.nvidia.com"} },
			wantErrs: []string{`args.draDeviceClassNames[1]: Duplicate value: "gpu.nvidia.com"`},
		},
		{
			name:     "malformed DRA RDMA device class name",
			modify:   func(a *config.NVLinkTopoArgs) { a.DRARDMADeviceClassNames = []string{"dranet", "RDMA NICs"} },
			wantErrs: []string{"args.draRDMADeviceClassNames[1]: Invalid value", `"RDMA NICs"`},
		},
		{
			name: "a DRA class both GPUs and RDMA NICs",
			modify: func(a *config.NVLinkTopoArgs) {
				a.DRADeviceClassNames, a.DRARDMADeviceClassNames = []string{"gpu.nvidia.com"}, []string{"dranet", "gpu.nvidia.com", "dranet"}
			},
			wantErrs: []string{`args.draRDMADeviceClassNames[1]: Invalid value: "gpu.nvidia.com": is also in draDeviceClassNames`, `args.draRDMADeviceClassNames[2]: Duplicate value: "dranet"`},
		},
		{
			name: "DRA classes without a driver",
			modify: func(a *config.NVLinkTopoArgs) {
				a.DRADeviceClassNames, a.DRADriverName = []string{"gpu.nvidia.com"}, ""
			},
			wantErrs: []string{"args.draDriverName: Invalid value"},
		},
		{
			name:     "duplicate RDMA resource names",
			modify:   func(a *config.NVLinkTopoArgs) { a.RDMAResourceNames = []string{"rdma/ib", "rdma/ib"} },
			wantErrs: []string{`args.rdmaResourceNames[1]: Duplicate value: "rdma/ib"`},
		},
		{
			name:     "RDMA resource name equal to the GPU one",
			modify:   func(a *config.NVLinkTopoArgs) { a.RDMAResourceNames = []string{"rdma/ib", "nvidia.com/gpu"} },
			wantErrs: []string{"args.rdmaResourceNames[1]: Invalid value", "must differ from gpuResourceName"},
		},
		{
			name:     "unknown island policy",
			modify:   func(a *config.NVLinkTopoArgs) { a.IslandPolicy = "Always" },
			wantErrs: []string{`args.islandPolicy: Unsupported value: "Always"`, `"Required", "Preferred", "Ignore"`},
		},
		{
			name:     "empty island policy",
			modify:   func(a *config.NVLinkTopoArgs) { a.IslandPolicy = "" },
			wantErrs: []string{`args.islandPolicy: Unsupported value: ""`},
		},
		{
			name:     "island policy is case sensitive",
			modify:   func(a *config.NVLinkTopoArgs) { a.IslandPolicy = "required" },
			wantErrs: []string{`args.islandPolicy: Unsupported value: "required"`},
		},
		{
			name:     "unknown PCIe level",
			modify:   func(a *config.NVLinkTopoArgs) { a.MaxPCIeLevel = "NV12" },
			wantErrs: []string{`args.maxPCIeLevel: Unsupported value: "NV12"`, `"PIX", "PXB", "PHB", "NODE", "SYS"`},
		},
		{
			name:     "zero maxTopologyAge",
			modify:   func(a *config.NVLinkTopoArgs) { a.MaxTopologyAge = metav1.Duration{} },
			wantErrs: []string{`args.maxTopologyAge: Invalid value: "0s": must be greater than zero`},
		},
		{
			name:     "negative maxTopologyAge",
			modify:   func(a *config.NVLinkTopoArgs) { a.MaxTopologyAge = metav1.Duration{Duration: -time.Minute} },
			wantErrs: []string{`args.maxTopologyAge: Invalid value: "-1m0s": must be greater than zero`},
		},
		{
			name:     "negative islandFit weight",
			modify:   func(a *config.NVLinkTopoArgs) { a.ScoreWeights.IslandFit = -1 },
			wantErrs: []string{"args.scoreWeights.islandFit: Invalid value: -1: must be between 0 and 100"},
		},
		{
			name:     "nicProximity weight over 100",
			modify:   func(a *config.NVLinkTopoArgs) { a.ScoreWeights.NICProximity = 101 },
			wantErrs: []string{"args.scoreWeights.nicProximity: Invalid value: 101: must be between 0 and 100"},
		},
		{
			name:     "negative nicBandwidth weight",
			modify:   func(a *config.NVLinkTopoArgs) { a.ScoreWeights.NICBandwidth = -7 },
			wantErrs: []string{"args.scoreWeights.nicBandwidth: Invalid value: -7"},
		},
		{
			name:     "all weights zero",
			modify:   func(a *config.NVLinkTopoArgs) { a.ScoreWeights = config.NVLinkTopoScoreWeights{} },
			wantErrs: []string{"args.scoreWeights: Invalid value", "at least one weight must be greater than zero"},
		},
		{
			name: "every error is reported, not just the first",
			modify: func(a *config.NVLinkTopoArgs) {
				a.IslandPolicy = "Always"
				a.MaxTopologyAge = metav1.Duration{}
				a.ScoreWeights.IslandFit = 1000
			},
			wantErrs: []string{"args.islandPolicy", "args.maxTopologyAge", "args.scoreWeights.islandFit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := validNVLinkTopoArgs()
			tt.modify(args)
			err := validation.ValidateNVLinkTopoArgs(field.NewPath("args"), args)
			if len(tt.wantErrs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func level(name, key, bandwidth string) config.TopologyLevel {
	return config.TopologyLevel{Name: name, NodeLabel: key, Bandwidth: resource.MustParse(bandwidth)}
}

func TestValidatePDAffinityArgs(t *testing.T) {
	customLevels := []config.TopologyLevel{
		level("zone", "topology.kubernetes.io/zone", "12.5G"),
		level("spine", "example.com/spine", "25G"),
		level("leaf", "example.com/leaf", "50G"),
	}
	tests := []struct {
		name     string
		args     config.PDAffinityArgs
		wantErrs []string
	}{
		{
			name: "defaults",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", LevelPreset: configv1.DefaultLevelPreset, SameNode: config.SameNodePolicy(configv1.DefaultSameNode)},
		},
		{
			name: "custom levels",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", Levels: customLevels, SameNode: config.SameNodeForbid},
		},
		{
			name: "custom levels with equal bandwidths",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu",
				Levels:   []config.TopologyLevel{level("spine", "example.com/spine", "50G"), level("leaf", "example.com/leaf", "50G")},
				SameNode: config.SameNodeAllow,
			},
		},
		{
			name:     "levelPreset together with levels",
			args:     config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", LevelPreset: "tandem", Levels: customLevels, SameNode: config.SameNodePrefer},
			wantErrs: []string{"args.levelPreset: Forbidden", "mutually exclusive"},
		},
		{
			name:     "unknown preset",
			args:     config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", LevelPreset: "aks", SameNode: config.SameNodePrefer},
			wantErrs: []string{`args.levelPreset: Unsupported value: "aks"`, `"coreweave", "eks", "gfd", "gke", "nebius", "oci", "tandem", "topograph", "topograph-v0"`},
		},
		{
			name:     "neither preset nor levels",
			args:     config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", SameNode: config.SameNodePrefer},
			wantErrs: []string{"args.levels: Required value"},
		},
		{
			name: "bandwidth decreasing from coarse to fine",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu",
				Levels: []config.TopologyLevel{
					level("zone", "topology.kubernetes.io/zone", "12.5G"),
					level("spine", "example.com/spine", "50G"),
					level("leaf", "example.com/leaf", "25G"),
				},
				SameNode: config.SameNodePrefer,
			},
			wantErrs: []string{"args.levels: Invalid value", "levels[2] (leaf)", "lower than levels[1] (spine)"},
		},
		{
			name: "zero bandwidth",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu",
				Levels:   []config.TopologyLevel{level("spine", "example.com/spine", "0"), level("leaf", "example.com/leaf", "50G")},
				SameNode: config.SameNodePrefer,
			},
			wantErrs: []string{`args.levels[0].bandwidth: Invalid value: "0": must be a positive number of bytes per second`},
		},
		{
			name: "negative bandwidth",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu",
				Levels:   []config.TopologyLevel{level("spine", "example.com/spine", "25G"), level("leaf", "example.com/leaf", "-50G")},
				SameNode: config.SameNodePrefer,
			},
			wantErrs: []string{`args.levels[1].bandwidth: Invalid value: "-50G"`},
		},
		{
			name: "duplicate level names",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu",
				Levels:   []config.TopologyLevel{level("leaf", "example.com/spine", "25G"), level("leaf", "example.com/leaf", "50G")},
				SameNode: config.SameNodePrefer,
			},
			wantErrs: []string{"args.levels: Invalid value", "levels[1] (leaf): name duplicates levels[0] (leaf)"},
		},
		{
			name: "invalid node label key",
			args: config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu",
				Levels:   []config.TopologyLevel{level("leaf", "not a label", "50G")},
				SameNode: config.SameNodePrefer,
			},
			wantErrs: []string{"args.levels: Invalid value", `levels[0] (leaf): key "not a label" is not a valid label key`},
		},
		{
			name:     "unknown same-node policy",
			args:     config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", LevelPreset: "tandem", SameNode: "Never"},
			wantErrs: []string{`args.sameNode: Unsupported value: "Never"`, `"Prefer", "Allow", "Forbid"`},
		},
		{
			name:     "empty same-node policy",
			args:     config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", LevelPreset: "tandem"},
			wantErrs: []string{`args.sameNode: Unsupported value: ""`},
		},
		{
			name:     "level and same-node errors together",
			args:     config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", LevelPreset: "aks", SameNode: "Never"},
			wantErrs: []string{"args.levelPreset", "args.sameNode"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validation.ValidatePDAffinityArgs(field.NewPath("args"), &tt.args)
			if len(tt.wantErrs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestValidatePDAffinityArgsEveryPreset(t *testing.T) {
	for _, name := range topology.PresetNames() {
		t.Run(name, func(t *testing.T) {
			args := &config.PDAffinityArgs{GPUResourceName: "nvidia.com/gpu", LevelPreset: name, SameNode: config.SameNodePrefer}
			require.NoError(t, validation.ValidatePDAffinityArgs(field.NewPath("args"), args))
		})
	}
}

func TestValidateGangArgs(t *testing.T) {
	valid := config.GangArgs{
		PermitWaitingTimeSeconds: configv1.DefaultPermitWaitingTimeSeconds,
		PodGroupBackoffSeconds:   configv1.DefaultPodGroupBackoffSeconds,
		PodGroupRejectPercentage: configv1.DefaultPodGroupRejectPercentage,
	}
	tests := []struct {
		name     string
		modify   func(*config.GangArgs)
		wantErrs []string
	}{
		{name: "defaults", modify: func(*config.GangArgs) {}},
		{name: "the longest wait kube-scheduler allows", modify: func(a *config.GangArgs) { a.PermitWaitingTimeSeconds = 900 }},
		{name: "reject on any failure, back off", modify: func(a *config.GangArgs) { a.PodGroupRejectPercentage = 0; a.PodGroupBackoffSeconds = 30 }},
		{name: "never reject", modify: func(a *config.GangArgs) { a.PodGroupRejectPercentage = 100 }},
		{
			name:     "zero wait",
			modify:   func(a *config.GangArgs) { a.PermitWaitingTimeSeconds = 0 },
			wantErrs: []string{"pluginConfig[Gang].args.permitWaitingTimeSeconds: Invalid value: 0", "between 1 and 900"},
		},
		{
			name:     "wait beyond kube-scheduler's cap",
			modify:   func(a *config.GangArgs) { a.PermitWaitingTimeSeconds = 901 },
			wantErrs: []string{"pluginConfig[Gang].args.permitWaitingTimeSeconds: Invalid value: 901", "at most 15m0s"},
		},
		{
			name:     "negative backoff",
			modify:   func(a *config.GangArgs) { a.PodGroupBackoffSeconds = -1 },
			wantErrs: []string{"pluginConfig[Gang].args.podGroupBackoffSeconds: Invalid value: -1", "must not be negative"},
		},
		{
			name:     "percentage out of range, with another error",
			modify:   func(a *config.GangArgs) { a.PodGroupRejectPercentage = 101; a.PodGroupBackoffSeconds = -5 },
			wantErrs: []string{"pluginConfig[Gang].args.podGroupRejectPercentage: Invalid value: 101", "between 0 and 100", "podGroupBackoffSeconds"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := valid
			tt.modify(&args)
			err := validation.ValidateGangArgs(field.NewPath("pluginConfig").Key("Gang").Child("args"), &args)
			if len(tt.wantErrs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}
