package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/test/utils/ktesting"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/tandem-sched/tandem/pkg/scheduler"
)

// configzName is the name kube-scheduler's Run registers its configuration under.
const configzName = "componentconfig"

// ShippedSchedulerConfig is the KubeSchedulerConfiguration manifests/ ships.
func ShippedSchedulerConfig() string {
	return filepath.Join(RepoRoot(), "manifests", "scheduler", "scheduler-config.yaml")
}

// StartScheduler runs the tandem scheduler in this process, as the binary
// runs it, from the configuration file at configPath. Two settings are
// changed and nothing else: the client connection uses this control
// plane's kubeconfig, and leader election is off (the in-process scheduler
// would otherwise exit the process when its context ends). It returns the
// error the scheduler fails start-up with, such as invalid plugin args; the
// scheduler stops when tb's cleanup runs.
func (cp *ControlPlane) StartScheduler(tb ktesting.TB, configPath string, clk clock.PassiveClock) error {
	tb.Helper()
	return cp.StartSchedulerWith(tb, configPath, clk, SchedulerOptions{})
}

// SchedulerOptions change how StartSchedulerWith runs the scheduler.
type SchedulerOptions struct {
	// ClientQPS, when set, lifts the scheduler's client rate limit (QPS and
	// burst) as upstream's scheduler_perf does, so that a benchmark measures
	// the scheduler rather than its client's throttle.
	ClientQPS float32
}

// StartSchedulerWith is StartScheduler with options.
func (cp *ControlPlane) StartSchedulerWith(tb ktesting.TB, configPath string, clk clock.PassiveClock, o SchedulerOptions) error {
	tb.Helper()
	_, err := cp.StartStoppableScheduler(tb, configPath, clk, o)
	return err
}

// StartStoppableScheduler is StartSchedulerWith that also returns a function
// stopping the scheduler at once, as a crash would: pods waiting in Permit
// are never bound. Calling it more than once, or letting cleanup call it
// again, is harmless.
func (cp *ControlPlane) StartStoppableScheduler(tb ktesting.TB, configPath string, clk clock.PassiveClock, o SchedulerOptions) (stop func(), err error) {
	tb.Helper()
	path, err := cp.localSchedulerConfig(configPath, tb.TempDir(), o)
	if err != nil {
		return nil, err
	}
	opts := options.NewOptions()
	opts.ConfigFile = path
	// No health or metrics endpoint: tests run several schedulers at once.
	opts.SecureServing.BindPort = 0

	ctx, cancel := context.WithCancel(context.Background())
	cc, sched, err := app.Setup(ctx, opts, scheduler.PluginOptions(clk)...)
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cc, sched) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			// Run registers the scheduler's configuration under a
			// process-wide name; the next scheduler in this process
			// registers it again.
			configz.Delete(configzName)
		})
	}
	tb.Cleanup(stop)
	// Run returns early only when start-up fails.
	select {
	case err := <-done:
		done <- err
		return nil, fmt.Errorf("scheduler exited at start-up: %w", err)
	case <-time.After(time.Second):
		return stop, nil
	}
}

func (cp *ControlPlane) localSchedulerConfig(configPath, dir string, o SchedulerOptions) (string, error) {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", configPath, err)
	}
	conn, _ := doc["clientConnection"].(map[string]any)
	if conn == nil {
		conn = map[string]any{}
	}
	conn["kubeconfig"] = cp.Kubeconfig
	if o.ClientQPS > 0 {
		conn["qps"], conn["burst"] = o.ClientQPS, int(o.ClientQPS)
	}
	doc["clientConnection"] = conn
	le, _ := doc["leaderElection"].(map[string]any)
	if le == nil {
		le = map[string]any{}
	}
	le["leaderElect"] = false
	doc["leaderElection"] = le
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.Base(configPath))
	return path, os.WriteFile(path, out, 0o600)
}
