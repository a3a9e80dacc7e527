package scheme_test

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	kubeschedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	"github.com/tandem-sched/tandem/apis/config"
	_ "github.com/tandem-sched/tandem/apis/config/scheme"
	configv1 "github.com/tandem-sched/tandem/apis/config/v1"
	"github.com/tandem-sched/tandem/apis/config/validation"
)

// decode decodes a whole KubeSchedulerConfiguration with the kube-scheduler's
// own (strict) codecs, as the scheduler binary reads its --config file.
func decode(t *testing.T, data []byte) (*schedconfig.KubeSchedulerConfiguration, error) {
	t.Helper()
	obj, _, err := kubeschedulerscheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	cfg, ok := obj.(*schedconfig.KubeSchedulerConfiguration)
	require.True(t, ok, "decoded a %T", obj)
	return cfg, nil
}

// pluginArgs returns the args of the named plugin in the named profile.
func pluginArgs(t *testing.T, cfg *schedconfig.KubeSchedulerConfiguration, profile, plugin string) runtime.Object {
	t.Helper()
	for _, p := range cfg.Profiles {
		if p.SchedulerName != profile {
			continue
		}
		for _, pc := range p.PluginConfig {
			if pc.Name == plugin {
				return pc.Args
			}
		}
		require.Failf(t, "plugin config not found", "profile %s has no pluginConfig for %s", profile, plugin)
	}
	require.Failf(t, "profile not found", "no profile %s", profile)
	return nil
}

func defaultNVLinkTopoArgs() config.NVLinkTopoArgs {
	return config.NVLinkTopoArgs{
		GPUResourceName:     configv1.DefaultGPUResourceName,
		RDMAResourceNames:   configv1.DefaultRDMAResourceNames(),
		DRADeviceClassNames: []string{configv1.DefaultDRADeviceClassName},
		DRADriverName:       configv1.DefaultDRADriverName,
		IslandPolicy:        config.IslandPolicy(configv1.DefaultIslandPolicy),
		MaxPCIeLevel:        config.PCIeLevel(configv1.DefaultMaxPCIeLevel),
		MaxTopologyAge:      metav1.Duration{Duration: configv1.DefaultMaxTopologyAge},
		ScoreWeights: config.NVLinkTopoScoreWeights{
			IslandFit:    configv1.DefaultIslandFitWeight,
			NICProximity: configv1.DefaultNICProximityWeight,
			NICBandwidth: configv1.DefaultNICBandwidthWeight,
		},
	}
}

func defaultGangArgs() config.GangArgs {
	return config.GangArgs{
		PermitWaitingTimeSeconds: configv1.DefaultPermitWaitingTimeSeconds,
		PodGroupBackoffSeconds:   configv1.DefaultPodGroupBackoffSeconds,
		PodGroupRejectPercentage: configv1.DefaultPodGroupRejectPercentage,
	}
}

type wantLevel struct {
	name, key string
	bandwidth int64
}

func TestDecodePluginConfig(t *testing.T) {
	tests := []struct {
		name         string
		data         string
		wantNVLink   func(*config.NVLinkTopoArgs)
		wantPreset   string
		wantLevels   []wantLevel
		wantSameNode config.SameNodePolicy
		wantGang     config.GangArgs
	}{
		{
			name: "every field set",
			data: `
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: tandem-scheduler
  pluginConfig:
  - name: NVLinkTopo
    args:
      gpuResourceName: example.com/gpu
      rdmaResourceNames: [rdma/hca, example.com/rdma]
      islandPolicy: Preferred
      maxPCIeLevel: PIX
      maxTopologyAge: 90s
      scoreWeights:
        islandFit: 10
        nicProximity: 20
        nicBandwidth: 30
  - name: PDAffinity
    args:
      levels:
      - {name: spine, nodeLabel: example.com/spine, bandwidth: 25G}
      - {name: leaf, nodeLabel: example.com/leaf, bandwidth: 50G}
      sameNode: Forbid
  - name: Gang
    args:
      permitWaitingTimeSeconds: 120
      podGroupBackoffSeconds: 30
      podGroupRejectPercentage: 0
`,
			wantNVLink: func(a *config.NVLinkTopoArgs) {
				a.GPUResourceName = "example.com/gpu"
				a.RDMAResourceNames = []string{"rdma/hca", "example.com/rdma"}
				a.IslandPolicy = config.IslandPreferred
				a.MaxPCIeLevel = "PIX"
				a.MaxTopologyAge = metav1.Duration{Duration: 90 * time.Second}
				a.ScoreWeights = config.NVLinkTopoScoreWeights{IslandFit: 10, NICProximity: 20, NICBandwidth: 30}
			},
			wantLevels: []wantLevel{
				{"spine", "example.com/spine", 25e9},
				{"leaf", "example.com/leaf", 50e9},
			},
			wantSameNode: config.SameNodeForbid,
			wantGang:     config.GangArgs{PermitWaitingTimeSeconds: 120, PodGroupBackoffSeconds: 30, PodGroupRejectPercentage: 0},
		},
		{
			name: "some fields set, the rest defaulted, explicit zero weight kept",
			data: `
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: tandem-scheduler
  pluginConfig:
  - name: NVLinkTopo
    args:
      islandPolicy: Ignore
      scoreWeights:
        islandFit: 0
  - name: PDAffinity
    args:
      levelPreset: gke
  - name: Gang
    args:
      podGroupBackoffSeconds: 10
`,
			wantNVLink: func(a *config.NVLinkTopoArgs) {
				a.IslandPolicy = config.IslandIgnore
				a.ScoreWeights.IslandFit = 0
			},
			wantPreset:   "gke",
			wantSameNode: config.SameNodePolicy(configv1.DefaultSameNode),
			wantGang:     func() config.GangArgs { a := defaultGangArgs(); a.PodGroupBackoffSeconds = 10; return a }(),
		},
		{
			name: "empty args are all defaults",
			data: `
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: tandem-scheduler
  pluginConfig:
  - name: NVLinkTopo
    args: {}
  - name: PDAffinity
    args: {}
  - name: Gang
    args: {}
`,
			wantNVLink:   func(*config.NVLinkTopoArgs) {},
			wantPreset:   configv1.DefaultLevelPreset,
			wantSameNode: config.SameNodePolicy(configv1.DefaultSameNode),
			wantGang:     defaultGangArgs(),
		},
		{
			name: "no args at all are all defaults",
			data: `
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: tandem-scheduler
  pluginConfig:
  - name: NVLinkTopo
  - name: PDAffinity
  - name: Gang
`,
			wantNVLink:   func(*config.NVLinkTopoArgs) {},
			wantPreset:   configv1.DefaultLevelPreset,
			wantSameNode: config.SameNodePolicy(configv1.DefaultSameNode),
			wantGang:     defaultGangArgs(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := decode(t, []byte(tt.data))
			require.NoError(t, err)

			nvlink, ok := pluginArgs(t, cfg, "tandem-scheduler", "NVLinkTopo").(*config.NVLinkTopoArgs)
			require.True(t, ok, "NVLinkTopo args are not the internal type")
			want := defaultNVLinkTopoArgs()
			tt.wantNVLink(&want)
			require.Equal(t, want, *nvlink)

			pd, ok := pluginArgs(t, cfg, "tandem-scheduler", "PDAffinity").(*config.PDAffinityArgs)
			require.True(t, ok, "PDAffinity args are not the internal type")
			require.Equal(t, tt.wantPreset, pd.LevelPreset)
			require.Equal(t, tt.wantSameNode, pd.SameNode)
			require.Len(t, pd.Levels, len(tt.wantLevels))
			for i, l := range tt.wantLevels {
				require.Equal(t, l.name, pd.Levels[i].Name)
				require.Equal(t, l.key, pd.Levels[i].NodeLabel)
				require.Equal(t, l.bandwidth, pd.Levels[i].Bandwidth.Value())
			}

			gang, ok := pluginArgs(t, cfg, "tandem-scheduler", "Gang").(*config.GangArgs)
			require.True(t, ok, "Gang args are not the internal type")
			gang.TypeMeta = metav1.TypeMeta{}
			require.Equal(t, tt.wantGang, *gang)

			// What the decoder produces is what the plugins accept.
			require.NoError(t, validation.ValidateNVLinkTopoArgs(field.NewPath("args"), nvlink))
			require.NoError(t, validation.ValidatePDAffinityArgs(field.NewPath("args"), pd))
			require.NoError(t, validation.ValidateGangArgs(field.NewPath("args"), gang))
		})
	}
}

func TestDecodeRejectsBadArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     string
		wantErrs []string
	}{
		{
			name: "unknown field in NVLinkTopo args",
			args: `
  - name: NVLinkTopo
    args:
      islandPolicy: Required
      islandPolicyy: Preferred
`,
			wantErrs: []string{"strict decoding error", "decoding args for plugin NVLinkTopo", `unknown field "islandPolicyy"`},
		},
		{
			name: "unknown field in NVLinkTopo score weights",
			args: `
  - name: NVLinkTopo
    args:
      scoreWeights:
        islandfit: 1
`,
			wantErrs: []string{"decoding args for plugin NVLinkTopo", `unknown field "scoreWeights.islandfit"`},
		},
		{
			name: "unknown field in PDAffinity args",
			args: `
  - name: PDAffinity
    args:
      levelPreset: tandem
      sameNodePolicy: Forbid
`,
			wantErrs: []string{"strict decoding error", "decoding args for plugin PDAffinity", `unknown field "sameNodePolicy"`},
		},
		{
			name: "unknown field in a PDAffinity level",
			args: `
  - name: PDAffinity
    args:
      levels:
      - {name: leaf, nodeLabel: example.com/leaf, bandwidth: 50G, key: example.com/leaf}
`,
			wantErrs: []string{"decoding args for plugin PDAffinity", `unknown field "levels[0].key"`},
		},
		{
			name: "unknown field in Gang args",
			args: `
  - name: Gang
    args:
      permitWaitingTimeSecond: 30
`,
			wantErrs: []string{"strict decoding error", "decoding args for plugin Gang", `unknown field "permitWaitingTimeSecond"`},
		},
		{
			name: "duplicate field in NVLinkTopo args",
			args: `
  - name: NVLinkTopo
    args:
      islandPolicy: Required
      islandPolicy: Ignore
`,
			// The YAML layer catches this one, before the args are decoded.
			wantErrs: []string{"strict decoding error", `key "islandPolicy" already set`},
		},
		{
			name: "malformed duration",
			args: `
  - name: NVLinkTopo
    args:
      maxTopologyAge: five minutes
`,
			wantErrs: []string{"decoding args for plugin NVLinkTopo"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := `
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: tandem-scheduler
  pluginConfig:` + tt.args
			_, err := decode(t, []byte(data))
			require.Error(t, err)
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// The scheduler Deployment and the integration tests run from this file, so
// it must decode strictly and give args the plugins accept.
func TestShippedSchedulerConfig(t *testing.T) {
	data, err := os.ReadFile("../../../manifests/scheduler/scheduler-config.yaml")
	require.NoError(t, err)
	cfg, err := decode(t, data)
	require.NoError(t, err)

	nvlink, ok := pluginArgs(t, cfg, "tandem-scheduler", "NVLinkTopo").(*config.NVLinkTopoArgs)
	require.True(t, ok, "NVLinkTopo args are not the internal type")
	require.NoError(t, validation.ValidateNVLinkTopoArgs(field.NewPath("pluginConfig").Key("NVLinkTopo").Child("args"), nvlink))
	require.Equal(t, defaultNVLinkTopoArgs(), *nvlink, "the shipped file restates the defaults")

	pd, ok := pluginArgs(t, cfg, "tandem-scheduler", "PDAffinity").(*config.PDAffinityArgs)
	require.True(t, ok, "PDAffinity args are not the internal type")
	require.NoError(t, validation.ValidatePDAffinityArgs(field.NewPath("pluginConfig").Key("PDAffinity").Child("args"), pd))
	require.Equal(t, "tandem", pd.LevelPreset)
	require.Empty(t, pd.Levels)
	require.Equal(t, config.SameNodePrefer, pd.SameNode)

	gang, ok := pluginArgs(t, cfg, "tandem-scheduler", "Gang").(*config.GangArgs)
	require.True(t, ok, "Gang args are not the internal type")
	require.NoError(t, validation.ValidateGangArgs(field.NewPath("pluginConfig").Key("Gang").Child("args"), gang))
	gang.TypeMeta = metav1.TypeMeta{}
	require.Equal(t, defaultGangArgs(), *gang, "the shipped file restates the defaults")
}
