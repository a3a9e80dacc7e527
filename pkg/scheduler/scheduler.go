// Package scheduler assembles the tandem scheduler: the kube-scheduler with
// tandem's plugins registered.
package scheduler

import (
	"github.com/spf13/cobra"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/utils/clock"

	// Register tandem's plugin args into the kube-scheduler config scheme.
	_ "github.com/tandem-sched/tandem/apis/config/scheme"

	"github.com/tandem-sched/tandem/pkg/plugins/gang"
	"github.com/tandem-sched/tandem/pkg/plugins/nvlinktopo"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
)

// SchedulerName is the name engine pods set in spec.schedulerName.
const SchedulerName = "tandem-scheduler"

// PluginOptions registers the out-of-tree plugins. Each call makes its own
// NodeTopology and PodGroup source, shared by the plugins of that one
// scheduler.
func PluginOptions(clk clock.PassiveClock) []app.Option {
	src := topologysource.New(topologysource.DefaultSyncTimeout)
	return []app.Option{
		app.WithPlugin(nvlinktopo.Name, nvlinktopo.NewFactory(src, clk)),
		app.WithPlugin(pdaffinity.Name, pdaffinity.NewFactory(src)),
		app.WithPlugin(gang.Name, gang.NewFactory(src, clk)),
	}
}

// NewCommand returns the tandem-scheduler command: kube-scheduler's own
// flags and behaviour, with tandem's plugins available to its profiles.
func NewCommand() *cobra.Command {
	cmd := app.NewSchedulerCommand(PluginOptions(clock.RealClock{})...)
	cmd.Use = "tandem-scheduler"
	cmd.Short = "Place disaggregated LLM inference pods by GPU, NVLink and network topology"
	return cmd
}
