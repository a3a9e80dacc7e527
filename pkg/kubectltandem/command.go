package kubectltandem

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	v1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// flags are the options every subcommand shares.
type flags struct {
	config       *genericclioptions.ConfigFlags
	output       string
	levelPreset  string
	promptTokens int
	labelPresets []string
	presetsSet   bool
	gpuResource  string
	allNS        bool
}

// NewCommand is `kubectl tandem`.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	f := &flags{config: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-tandem",
		Short: "What tandem's scheduler sees: free GPUs per NVLink island, and where each prefill sends its KV cache",
		Long: `kubectl tandem shows, read-only, what tandem's scheduler sees.

  nodes   each node's free GPUs per NVLink island (its NodeTopology's islands less
          the GPUs bound pods hold), GPUDirect RDMA readiness with the failed check,
          the agent's heartbeat age, and the node's domain at every topology level
  pairs   each P/D group's prefill→decode pairs (in a replica unit every bound
          prefill with every bound decode; in a pool each bound decode with the
          nearest bound prefill), the path class and the modeled KV-transfer time

--output svg or html draws the fabric tree with every pair across it; html is one
self-contained page.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	pf := root.PersistentFlags()
	f.config.AddFlags(pf)
	pf.StringVarP(&f.output, "output", "o", OutputTable, "output format: "+strings.Join(Outputs, "|"))
	pf.StringVar(&f.levelPreset, "level-preset", "tandem", "topology levels, as PDAffinity's levelPreset: "+strings.Join(topology.PresetNames(), "|"))
	pf.IntVar(&f.promptTokens, "prompt-tokens", 4096, "prompt length the KV-transfer time is modeled for (Llama-3-70B BF16 KV cache)")
	pf.StringSliceVar(&f.labelPresets, "label-presets", nil, "serving stacks whose pod labels name roles and groups, as PDAffinity's labelPresets (default: all)")
	pf.StringVar(&f.gpuResource, "gpu-resource", "nvidia.com/gpu", "extended resource pods request GPUs by")
	pf.BoolVarP(&f.allNS, "all-namespaces", "A", false, "read pods of every namespace (the default unless --namespace is given)")

	for _, sub := range []struct {
		use, short string
		table      func(io.Writer, *View) error
	}{
		{"nodes", "Free GPUs per NVLink island, GPUDirect readiness, heartbeat age and domains of every node", NodesTable},
		{"pairs", "Each P/D group's prefill→decode pairs with path class and modeled KV-transfer time", PairsTable},
	} {
		table := sub.table
		root.AddCommand(&cobra.Command{
			Use:   sub.use,
			Short: sub.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				f.presetsSet = cmd.Flags().Changed("label-presets")
				return f.run(cmd.Context(), streams, table)
			},
		})
	}
	return root
}

func (f *flags) run(ctx context.Context, streams genericiooptions.IOStreams, table func(io.Writer, *View) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if !slices.Contains(Outputs, f.output) {
		return fmt.Errorf("--output %q: want one of %s", f.output, strings.Join(Outputs, ", "))
	}
	o := DefaultOptions()
	levels, err := topology.PresetLevels(f.levelPreset)
	if err != nil {
		return fmt.Errorf("--level-preset: %w", err)
	}
	o.Model.Levels = levels
	if f.promptTokens <= 0 {
		return fmt.Errorf("--prompt-tokens %d: must be positive", f.promptTokens)
	}
	o.PromptTokens = f.promptTokens
	if f.presetsSet {
		o.LabelPresets = append([]string{}, f.labelPresets...)
	}
	o.GPUResource = v1.ResourceName(f.gpuResource)
	if !f.allNS {
		ns, explicit, err := f.config.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return err
		}
		if explicit {
			o.Namespace = ns
		}
	}
	cfg, err := f.config.ToRESTConfig()
	if err != nil {
		return err
	}
	v, err := CollectFrom(ctx, cfg, o)
	if err != nil {
		return err
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(streams.ErrOut, "warning: %s\n", w)
	}
	switch f.output {
	case OutputJSON:
		return JSON(streams.Out, v)
	case OutputSVG:
		return SVG(streams.Out, v)
	case OutputHTML:
		return HTML(streams.Out, v)
	}
	return table(streams.Out, v)
}

// CollectFrom is Collect with clients for cfg.
func CollectFrom(ctx context.Context, cfg *rest.Config, o Options) (*View, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	tandem, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return Collect(ctx, kube, tandem, o)
}
