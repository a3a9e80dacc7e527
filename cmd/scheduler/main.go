// Command tandem-scheduler is a secondary Kubernetes scheduler for
// disaggregated LLM inference. Pods opt in with schedulerName: tandem-scheduler.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric

	"github.com/tandem-sched/tandem/pkg/scheduler"
)

func main() {
	os.Exit(cli.Run(scheduler.NewCommand()))
}
