package v1

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestSetDefaultsNVLinkTopoArgs(t *testing.T) {
	tests := []struct {
		name string
		in   *NVLinkTopoArgs
		want *NVLinkTopoArgs
	}{
		{
			name: "empty args get every default",
			in:   &NVLinkTopoArgs{},
			want: &NVLinkTopoArgs{
				DRADeviceClassNames: []string{DefaultDRADeviceClassName},
				DRADriverName:       DefaultDRADriverName,
				GPUResourceName:     DefaultGPUResourceName,
				RDMAResourceNames:   DefaultRDMAResourceNames(),
				IslandPolicy:        DefaultIslandPolicy,
				MaxPCIeLevel:        DefaultMaxPCIeLevel,
				MaxTopologyAge:      &metav1.Duration{Duration: DefaultMaxTopologyAge},
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To(DefaultIslandFitWeight),
					NICProximity: ptr.To(DefaultNICProximityWeight),
					NICBandwidth: ptr.To(DefaultNICBandwidthWeight),
				},
			},
		},
		{
			name: "set fields are kept",
			in: &NVLinkTopoArgs{
				DRADeviceClassNames: []string{"example.com-gpu"},
				DRADriverName:       "gpu.example.com",
				GPUResourceName:     "amd.com/gpu",
				RDMAResourceNames:   []string{"rdma/hca"},
				IslandPolicy:        "Preferred",
				MaxPCIeLevel:        "PIX",
				MaxTopologyAge:      &metav1.Duration{Duration: 30 * time.Second},
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To[int32](10),
					NICProximity: ptr.To[int32](20),
					NICBandwidth: ptr.To[int32](30),
				},
			},
			want: &NVLinkTopoArgs{
				DRADeviceClassNames: []string{"example.com-gpu"},
				DRADriverName:       "gpu.example.com",
				GPUResourceName:     "amd.com/gpu",
				RDMAResourceNames:   []string{"rdma/hca"},
				IslandPolicy:        "Preferred",
				MaxPCIeLevel:        "PIX",
				MaxTopologyAge:      &metav1.Duration{Duration: 30 * time.Second},
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To[int32](10),
					NICProximity: ptr.To[int32](20),
					NICBandwidth: ptr.To[int32](30),
				},
			},
		},
		{
			name: "explicit zero weights stay zero, unset ones get defaults",
			in: &NVLinkTopoArgs{
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To[int32](0),
					NICBandwidth: ptr.To[int32](0),
				},
			},
			want: &NVLinkTopoArgs{
				DRADeviceClassNames: []string{DefaultDRADeviceClassName},
				DRADriverName:       DefaultDRADriverName,
				GPUResourceName:     DefaultGPUResourceName,
				RDMAResourceNames:   DefaultRDMAResourceNames(),
				IslandPolicy:        DefaultIslandPolicy,
				MaxPCIeLevel:        DefaultMaxPCIeLevel,
				MaxTopologyAge:      &metav1.Duration{Duration: DefaultMaxTopologyAge},
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To[int32](0),
					NICProximity: ptr.To(DefaultNICProximityWeight),
					NICBandwidth: ptr.To[int32](0),
				},
			},
		},
		{
			name: "explicit empty RDMA list is kept (RDMA detection off)",
			in:   &NVLinkTopoArgs{RDMAResourceNames: []string{}},
			want: &NVLinkTopoArgs{
				DRADeviceClassNames: []string{DefaultDRADeviceClassName},
				DRADriverName:       DefaultDRADriverName,
				GPUResourceName:     DefaultGPUResourceName,
				RDMAResourceNames:   []string{},
				IslandPolicy:        DefaultIslandPolicy,
				MaxPCIeLevel:        DefaultMaxPCIeLevel,
				MaxTopologyAge:      &metav1.Duration{Duration: DefaultMaxTopologyAge},
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To(DefaultIslandFitWeight),
					NICProximity: ptr.To(DefaultNICProximityWeight),
					NICBandwidth: ptr.To(DefaultNICBandwidthWeight),
				},
			},
		},
		{
			name: "explicit empty DRA class list is kept (DRA claims not read)",
			in:   &NVLinkTopoArgs{DRADeviceClassNames: []string{}},
			want: &NVLinkTopoArgs{
				DRADeviceClassNames: []string{},
				DRADriverName:       DefaultDRADriverName,
				GPUResourceName:     DefaultGPUResourceName,
				RDMAResourceNames:   DefaultRDMAResourceNames(),
				IslandPolicy:        DefaultIslandPolicy,
				MaxPCIeLevel:        DefaultMaxPCIeLevel,
				MaxTopologyAge:      &metav1.Duration{Duration: DefaultMaxTopologyAge},
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To(DefaultIslandFitWeight),
					NICProximity: ptr.To(DefaultNICProximityWeight),
					NICBandwidth: ptr.To(DefaultNICBandwidthWeight),
				},
			},
		},
		{
			name: "explicit zero maxTopologyAge is kept for validation to reject",
			in:   &NVLinkTopoArgs{MaxTopologyAge: &metav1.Duration{}},
			want: &NVLinkTopoArgs{
				DRADeviceClassNames: []string{DefaultDRADeviceClassName},
				DRADriverName:       DefaultDRADriverName,
				GPUResourceName:     DefaultGPUResourceName,
				RDMAResourceNames:   DefaultRDMAResourceNames(),
				IslandPolicy:        DefaultIslandPolicy,
				MaxPCIeLevel:        DefaultMaxPCIeLevel,
				MaxTopologyAge:      &metav1.Duration{},
				ScoreWeights: NVLinkTopoScoreWeights{
					IslandFit:    ptr.To(DefaultIslandFitWeight),
					NICProximity: ptr.To(DefaultNICProximityWeight),
					NICBandwidth: ptr.To(DefaultNICBandwidthWeight),
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			SetDefaults_NVLinkTopoArgs(tt.in)
			require.Equal(t, tt.want, tt.in)
		})
	}
}

// The defaults must not alias shared state: changing one defaulted object
// must not change the next.
func TestSetDefaultsNVLinkTopoArgsIndependent(t *testing.T) {
	first := &NVLinkTopoArgs{}
	SetDefaults_NVLinkTopoArgs(first)
	first.RDMAResourceNames[0] = "changed/x"
	*first.ScoreWeights.IslandFit = 99
	first.MaxTopologyAge.Duration = time.Hour

	second := &NVLinkTopoArgs{}
	SetDefaults_NVLinkTopoArgs(second)
	require.Equal(t, DefaultRDMAResourceNames(), second.RDMAResourceNames)
	require.Equal(t, DefaultIslandFitWeight, *second.ScoreWeights.IslandFit)
	require.Equal(t, DefaultMaxTopologyAge, second.MaxTopologyAge.Duration)
	require.NotSame(t, second.ScoreWeights.IslandFit, second.ScoreWeights.NICProximity)
}

func TestSetDefaultsPDAffinityArgs(t *testing.T) {
	levels := []TopologyLevel{
		{Name: "leaf", NodeLabel: "example.com/leaf", Bandwidth: resource.MustParse("50G")},
	}
	tests := []struct {
		name string
		in   *PDAffinityArgs
		want *PDAffinityArgs
	}{
		{
			name: "empty args get the default preset and same-node policy",
			in:   &PDAffinityArgs{},
			want: &PDAffinityArgs{LevelPreset: DefaultLevelPreset, SameNode: DefaultSameNode, GPUResourceName: DefaultGPUResourceName},
		},
		{
			name: "set preset and policy are kept",
			in:   &PDAffinityArgs{LevelPreset: "gke", SameNode: "Forbid", GPUResourceName: "amd.com/gpu", LabelPresets: []string{}},
			want: &PDAffinityArgs{LevelPreset: "gke", SameNode: "Forbid", GPUResourceName: "amd.com/gpu", LabelPresets: []string{}},
		},
		{
			name: "custom levels get no preset",
			in:   &PDAffinityArgs{Levels: levels},
			want: &PDAffinityArgs{Levels: levels, SameNode: DefaultSameNode, GPUResourceName: DefaultGPUResourceName},
		},
		{
			name: "levels and preset both set are left for validation",
			in:   &PDAffinityArgs{LevelPreset: "eks", Levels: levels, SameNode: "Allow"},
			want: &PDAffinityArgs{LevelPreset: "eks", Levels: levels, SameNode: "Allow", GPUResourceName: DefaultGPUResourceName},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			SetDefaults_PDAffinityArgs(tt.in)
			require.Equal(t, tt.want, tt.in)
		})
	}
}

func TestSetDefaultsGangArgs(t *testing.T) {
	tests := []struct {
		name string
		in   *GangArgs
		want *GangArgs
	}{
		{
			name: "empty args get Coscheduling's defaults",
			in:   &GangArgs{},
			want: &GangArgs{PermitWaitingTimeSeconds: ptr.To[int64](60), PodGroupBackoffSeconds: ptr.To[int64](0), PodGroupRejectPercentage: ptr.To[int32](10)},
		},
		{
			name: "set fields are kept, explicit zeros too",
			in:   &GangArgs{PermitWaitingTimeSeconds: ptr.To[int64](0), PodGroupBackoffSeconds: ptr.To[int64](30), PodGroupRejectPercentage: ptr.To[int32](0)},
			want: &GangArgs{PermitWaitingTimeSeconds: ptr.To[int64](0), PodGroupBackoffSeconds: ptr.To[int64](30), PodGroupRejectPercentage: ptr.To[int32](0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			SetDefaults_GangArgs(tt.in)
			require.Equal(t, tt.want, tt.in)
		})
	}
}
