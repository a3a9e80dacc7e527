package scheme_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	kubeschedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/apis/config/validation"
)

// FuzzPluginArgs feeds arbitrary args for each of tandem's plugins through
// the scheduler's own strict decoding (defaults and conversion included) and
// tandem's validation, as the scheduler reads its --config file. Nothing may
// panic, and args that validate must resolve their topology levels.
func FuzzPluginArgs(f *testing.F) {
	seeds := []struct{ plugin, args string }{
		{"NVLinkTopo", "islandPolicy: Required\nmaxPCIeLevel: PXB\nmaxTopologyAge: 90s"},
		{"NVLinkTopo", "gpuResourceName: example.com/gpu\nrdmaResourceNames: [rdma/hca]\nscoreWeights: {islandFit: 10, nicProximity: 20, nicBandwidth: 30}"},
		{"NVLinkTopo", "islandPolicy: Sometimes\nmaxTopologyAge: -1s"},
		{"PDAffinity", "levelPreset: tandem\nsameNode: Forbid"},
		{"PDAffinity", "levels:\n- {name: spine, nodeLabel: example.com/spine, bandwidth: 25G}\n- {name: leaf, nodeLabel: example.com/leaf, bandwidth: 50G, global: true}"},
		{"PDAffinity", "labelPresets: [aibrix, lws, dynamo, llm-d]\nrequiredLevel: leaf"},
		{"PDAffinity", "levels:\n- {name: leaf, nodeLabel: \"\", bandwidth: 0}\n- {name: leaf, nodeLabel: a/b, bandwidth: 9223372036854775807G}"},
		{"Gang", "permitWaitingTimeSeconds: 120\npodGroupBackoffSeconds: 30\npodGroupRejectPercentage: 0"},
		{"Gang", "permitWaitingTimeSeconds: 0\npodGroupRejectPercentage: 101"},
	}
	for _, s := range seeds {
		f.Add(s.plugin, s.args)
	}
	f.Fuzz(func(t *testing.T, plugin, args string) {
		switch plugin {
		case "NVLinkTopo", "PDAffinity", "Gang":
		default:
			return
		}
		var b strings.Builder
		b.WriteString("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: tandem-scheduler\n  pluginConfig:\n  - name: ")
		b.WriteString(plugin)
		b.WriteString("\n    args:\n")
		for _, line := range strings.Split(args, "\n") {
			b.WriteString("      ")
			b.WriteString(line)
			b.WriteString("\n")
		}
		obj, _, err := kubeschedulerscheme.Codecs.UniversalDecoder().Decode([]byte(b.String()), nil, nil)
		if err != nil {
			return
		}
		cfg, ok := obj.(*schedconfig.KubeSchedulerConfiguration)
		if !ok {
			t.Fatalf("decoded a %T", obj)
		}
		path := field.NewPath("pluginConfig")
		for _, p := range cfg.Profiles {
			for _, pc := range p.PluginConfig {
				switch a := pc.Args.(type) {
				case *config.NVLinkTopoArgs:
					_ = validation.ValidateNVLinkTopoArgs(path, a)
				case *config.PDAffinityArgs:
					if validation.ValidatePDAffinityArgs(path, a) == nil {
						if _, err := a.ResolvedLevels(); err != nil {
							t.Fatalf("args pass validation but their levels do not resolve: %v\n%s", err, b.String())
						}
					}
				case *config.GangArgs:
					_ = validation.ValidateGangArgs(path, a)
				}
			}
		}
	})
}
