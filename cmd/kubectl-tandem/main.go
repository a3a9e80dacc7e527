// Command kubectl-tandem is the `kubectl tandem` plugin: a read-only view of
// free GPUs per NVLink island and of each P/D group's prefill→decode pairs,
// as tandem's scheduler sees them. Put it on PATH and run `kubectl tandem`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tandem-sched/tandem/pkg/kubectltandem"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cmd := kubectltandem.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "kubectl tandem: %v\n", err)
		os.Exit(1)
	}
}
