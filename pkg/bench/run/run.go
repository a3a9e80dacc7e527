// Package run places a benchmark workload on a fresh in-process control plane
// with one scheduler configuration, and measures the scheduler's capacity:
// every workload pod exists before the scheduler starts, and throughput,
// CPU per pod and scheduling attempt latency are taken over the window from
// the first binding to the last, along with where every pod landed. The
// demo and cmd/bench both use it.
package run

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2"
	testingclock "k8s.io/utils/clock/testing"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclient "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/scheduler"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Profile is one way of scheduling the workload.
type Profile string

const (
	// Default is kube-scheduler's default profile, pods as they are.
	Default Profile = "default"
	// RequiredAffinity is the default profile with the required podAffinity
	// on the leaf label that AIBrix and LWS inject among an instance's pods.
	RequiredAffinity Profile = "default+required-affinity"
	// PreferredAffinity is the same affinity as a preference of weight 100.
	PreferredAffinity Profile = "default+preferred-affinity"
	// Tandem is the shipped tandem-scheduler profile.
	Tandem Profile = "tandem"
)

// Profiles are all profiles, in the order reports list them.
var Profiles = []Profile{Default, RequiredAffinity, PreferredAffinity, Tandem}

// DefaultSchedulerName is kube-scheduler's default profile name.
const DefaultSchedulerName = v1.DefaultSchedulerName

// Namespace is where the workload's pods live.
const Namespace = metav1.NamespaceDefault

// attemptMetric is the histogram scheduler_perf reads attempt latency from.
const attemptMetric = "scheduler_scheduling_attempt_duration_seconds"

// Options say what to run.
type Options struct {
	Cluster  *clusterdesc.Cluster
	Workload *bench.Workload
	Profile  Profile
	// Settle is how long no pod may bind, once all are created, before the
	// rest count as pending.
	Settle time.Duration
	// Timeout bounds the wait for bindings.
	Timeout time.Duration
	// SchedulerQPS is the scheduler's client rate limit (QPS and burst);
	// scheduler_perf lifts it to 5000 so that it measures the scheduler,
	// not the limiter.
	SchedulerQPS float32
	// HeldShare is the share of the cluster's GPUs that pods of another
	// tenant hold before the workload (bench.HoldGPUs), placed by Seed.
	HeldShare float64
	Seed      uint64
	// CPUProfile, when set, names the files the run's CPU profile segments
	// are written to: cpu.pprof becomes cpu.000.pprof, cpu.001.pprof, ...
	CPUProfile string
	// SchedulerBinary, when set, runs the scheduler as a child process from
	// this binary (go build ./cmd/scheduler) rather than in this process,
	// so that its memory and CPU time are its own: the run reports the
	// child's memory once the pods are bound or settled, its CPU time as
	// the scheduler's, and its attempt latency from its /metrics.
	SchedulerBinary string
	// Inspect, when set, is called once the pods are bound or settled,
	// with a client config for the control plane, before it is torn down.
	Inspect func(ctx context.Context, cfg *rest.Config) error
	// Log receives the control plane's logs.
	Log io.Writer
	// Step reports progress.
	Step func(format string, args ...any)
}

// Result is one run.
type Result struct {
	Profile Profile      `json:"profile"`
	Nodes   []bench.Node `json:"-"`
	Pods    []bench.Pod  `json:"-"`
	// HeldGPUs are the GPUs other tenants' pods hold before the workload.
	HeldGPUs  int `json:"heldGPUs"`
	Scheduled int `json:"scheduled"`
	// FirstBinding is from the scheduler's start, when every workload pod
	// exists already, to the first binding the pod informer sees.
	FirstBinding time.Duration `json:"firstBindingNanos"`
	// Window is from the first binding to the last: the measured window.
	Window time.Duration `json:"windowNanos"`
	// Throughput is Scheduled ÷ Window, in pods per second; 0 with fewer
	// than two bindings.
	Throughput float64 `json:"throughputPodsPerSecond"`
	// ProcessCPU is the user and system CPU time of the whole process
	// (etcd, kube-apiserver, scheduler and the benchmark's informer all run
	// in it) over the window, and ProcessCPUPerPod that ÷ Scheduled.
	ProcessCPU       time.Duration `json:"processCPUNanos"`
	ProcessCPUPerPod time.Duration `json:"processCPUPerPodNanos"`
	// SchedulerCPUPerPod is the part of ProcessCPU spent in goroutines the
	// scheduler started, ÷ Scheduled, and SchedulerCPUShare that part of
	// ProcessCPU: a CPU profile runs in one-second segments, and each
	// segment's share of samples in the scheduler's goroutines is applied to
	// the process CPU time of the part of the segment inside the window.
	// Profiled is false when that could not be done, and NotProfiled says
	// why.
	Profiled           bool          `json:"profiled"`
	NotProfiled        string        `json:"notProfiled,omitempty"`
	SchedulerCPUShare  float64       `json:"schedulerCPUShare"`
	SchedulerCPUPerPod time.Duration `json:"schedulerCPUPerPodNanos"`
	// Attempts are the scheduling attempt latencies of this run, by result
	// (scheduled, unschedulable, error).
	Attempts map[string]bench.Histogram `json:"attempts"`
	// SchedulerProcess is true when the scheduler ran as its own process
	// (Options.SchedulerBinary): ProcessCPU then adds the child's CPU time
	// to this process's, and the scheduler's CPU is the child's alone.
	SchedulerProcess bool `json:"schedulerProcess,omitempty"`
	// SchedulerPID is the child's process id, stopped when Run returns.
	SchedulerPID int `json:"-"`
	// Memory is the child's memory once the pods are bound or settled.
	Memory *bench.ProcessMemory `json:"schedulerMemory,omitempty"`
}

// Run creates a control plane, the cluster, the scheduler and the workload,
// waits for the pods to bind or settle, and tears everything down.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Step == nil {
		o.Step = func(string, ...any) {}
	}
	if o.Settle == 0 {
		o.Settle = 20 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Minute
	}
	if o.SchedulerQPS == 0 {
		o.SchedulerQPS = 5000
	}
	tb := &controlplane.ProcessTB{Output: o.Log}
	defer tb.Close()
	var res *Result
	err := tb.Run(func() {
		var err error
		res, err = run(ctx, tb, o)
		if err != nil {
			tb.Fatal(err)
		}
	})
	return res, err
}

func run(ctx context.Context, tb *controlplane.ProcessTB, o Options) (*Result, error) {
	o.Step("[%s] starting etcd and kube-apiserver", o.Profile)
	cp := controlplane.StartControlPlane(tb)
	now := time.Now()
	built := o.Cluster.Build(now)
	if o.HeldShare > 0 {
		if _, err := bench.HoldGPUs(built, o.HeldShare, o.Seed); err != nil {
			return nil, err
		}
	}
	o.Step("[%s] creating %d nodes and their NodeTopology objects", o.Profile, len(built))
	if err := createNodes(ctx, cp, built); err != nil {
		return nil, err
	}
	holders := clusterdesc.HolderPods(built)
	if len(holders) > 0 {
		o.Step("[%s] creating %d pods of another tenant, bound already, holding %d GPUs", o.Profile, len(holders), bench.HeldGPUs(bench.NodesOf(built)))
		if err := clusterdesc.CreateHolders(ctx, cp.Client, built); err != nil {
			return nil, err
		}
	}
	instances := o.Workload.Instances()
	if err := createPodGroups(ctx, cp, instances); err != nil {
		return nil, err
	}

	schedulerName, config := DefaultSchedulerName, ""
	if o.Profile == Tandem {
		schedulerName, config = scheduler.SchedulerName, controlplane.ShippedSchedulerConfig()
	} else {
		config = filepath.Join(tb.TempDir(), "default-scheduler-config.yaml")
		if err := os.WriteFile(config, []byte(defaultConfig), 0o600); err != nil {
			return nil, err
		}
	}

	watcher, err := watchBindings(ctx, cp)
	if err != nil {
		return nil, err
	}
	defer watcher.stop()
	var pods []*v1.Pod
	var want []bench.Pod
	for _, in := range instances {
		for _, p := range in.Pods() {
			pods = append(pods, podFor(p, in, schedulerName, o.Profile))
			want = append(want, p)
		}
	}
	// Every pod exists before the scheduler starts, so that throughput is
	// the scheduler's capacity, not the rate the pods are created at.
	o.Step("[%s] creating %d pods of %d instances, with no scheduler running", o.Profile, len(pods), len(instances))
	if err := createPods(ctx, cp, pods); err != nil {
		return nil, err
	}
	if err := watcher.waitSeen(ctx, len(pods), time.Minute); err != nil {
		return nil, err
	}
	if early := watcher.bound(); len(early) > 0 {
		names := slices.Sorted(maps.Keys(early))
		return nil, fmt.Errorf("%d pods are bound before the scheduler started, pod %s/%s to node %s first", len(names), Namespace, names[0], early[names[0]])
	}
	if o.SchedulerBinary != "" {
		return runProcess(ctx, tb, cp, o, config, schedulerName, now, built, want, watcher, len(pods))
	}
	before, err := attempts(schedulerName)
	if err != nil {
		return nil, err
	}

	// The profile runs from before the scheduler starts, in segments whose
	// process CPU time is known, so that the scheduler's share of each can
	// be applied to the part of it inside the window.
	prof := startSegments(time.Second)
	o.Step("[%s] starting the scheduler (profile %s); the clock starts now", o.Profile, schedulerName)
	start := time.Now()
	watcher.startClock(start)
	// Heartbeats were written at now: the scheduler's clock stays there, so
	// a long run does not see its agents go stale. Every goroutine the
	// scheduler starts carries the label, which attributes its CPU samples.
	pprof.Do(ctx, pprof.Labels(cpuLabelKey, cpuLabelScheduler), func(context.Context) {
		err = startScheduler(tb, cp, config, testingclock.NewFakePassiveClock(now), o.SchedulerQPS)
	})
	if err != nil {
		prof.stop()
		return nil, err
	}
	o.Step("[%s] waiting for the scheduler (pods still unbound after %s without a binding count as pending)", o.Profile, o.Settle)
	watcher.wait(ctx, len(pods), o.Settle, o.Timeout, func(bound int) {
		o.Step("[%s] %d/%d pods bound", o.Profile, bound, len(pods))
	})
	segments, profErr := prof.stop()
	if o.Inspect != nil {
		if err := o.Inspect(ctx, cp.Config); err != nil {
			return nil, err
		}
	}
	after, err := attempts(schedulerName)
	if err != nil {
		return nil, err
	}

	res := newResult(o.Profile, built, want, watcher, start)
	w := watcher.window()
	switch {
	case profErr != nil:
		res.NotProfiled = profErr.Error()
	case res.Scheduled < 2:
		res.NotProfiled = "fewer than two bindings: no window"
	default:
		var segs []bench.CPUSegment
		for _, seg := range segments {
			segs = append(segs, seg.CPUSegment)
		}
		sched, sampled := bench.LabeledCPUIn(segs, bench.CPUPoint{Time: w.first, CPU: w.firstCPU}, bench.CPUPoint{Time: w.last, CPU: w.lastCPU})
		if sampled < minProfiled {
			res.NotProfiled = fmt.Sprintf("the profile segments covering the window hold %s of CPU samples, fewer than %s: too few to attribute", sampled, minProfiled)
			break
		}
		res.Profiled = true
		if res.ProcessCPU > 0 {
			res.SchedulerCPUShare = float64(sched) / float64(res.ProcessCPU)
		}
		res.SchedulerCPUPerPod = sched / time.Duration(res.Scheduled)
	}
	if o.CPUProfile != "" {
		ext := filepath.Ext(o.CPUProfile)
		for i, seg := range segments {
			path := fmt.Sprintf("%s.%03d%s", strings.TrimSuffix(o.CPUProfile, ext), i, ext)
			if err := os.WriteFile(path, seg.profile, 0o644); err != nil {
				return nil, fmt.Errorf("writing the CPU profile: %w", err)
			}
		}
	}
	for result, h := range after {
		d, err := h.Sub(before[result])
		if err != nil {
			return nil, fmt.Errorf("%s{result=%s}: %w", attemptMetric, result, err)
		}
		res.Attempts[result] = d
	}
	return res, nil
}

// newResult is what every run reports: where the pods went, the window and
// the process CPU over it.
func newResult(profile Profile, built []clusterdesc.Node, want []bench.Pod, watcher *bindingWatcher, start time.Time) *Result {
	res := &Result{Profile: profile, Nodes: bench.NodesOf(built), Attempts: map[string]bench.Histogram{}}
	res.HeldGPUs = bench.HeldGPUs(res.Nodes)
	bound := watcher.bound()
	for _, p := range want {
		p.Node = bound[p.Name]
		if p.Node != "" {
			res.Scheduled++
		}
		res.Pods = append(res.Pods, p)
	}
	w := watcher.window()
	if res.Scheduled > 0 {
		res.FirstBinding = w.first.Sub(start)
	}
	if res.Scheduled > 1 {
		res.Window = w.last.Sub(w.first)
		res.Throughput = float64(res.Scheduled) / res.Window.Seconds()
		res.ProcessCPU = w.lastCPU - w.firstCPU
		res.ProcessCPUPerPod = res.ProcessCPU / time.Duration(res.Scheduled)
	}
	return res
}

// maxHeartbeatAge is how old the NodeTopology heartbeats, written when the
// cluster is created, may be when a scheduler process starts: it runs on the
// real clock, and the shipped maxTopologyAge is 5m.
const maxHeartbeatAge = 4 * time.Minute

// heapMetric is the Go heap in use on the scheduler's /metrics.
const heapMetric = "go_memstats_heap_inuse_bytes"

// runProcess is the rest of run with the scheduler as a child process.
func runProcess(ctx context.Context, tb *controlplane.ProcessTB, cp *controlplane.ControlPlane, o Options, config, schedulerName string,
	now time.Time, built []clusterdesc.Node, want []bench.Pod, watcher *bindingWatcher, pods int) (*Result, error) {
	if age := time.Since(now); age > maxHeartbeatAge {
		return nil, fmt.Errorf("the NodeTopology heartbeats are %s old when the scheduler process starts, more than %s: it runs on the real clock, and would see nodes go stale (maxTopologyAge 5m) while it places the pods", age.Round(time.Second), maxHeartbeatAge)
	}
	o.Step("[%s] starting the scheduler process %s (profile %s); the clock starts now", o.Profile, o.SchedulerBinary, schedulerName)
	start := time.Now()
	watcher.startClock(start)
	proc, err := cp.StartSchedulerProcess(tb, o.SchedulerBinary, config, controlplane.SchedulerOptions{ClientQPS: o.SchedulerQPS}, o.Log)
	if err != nil {
		return nil, err
	}
	watcher.setChild(func() time.Duration {
		cpu, err := bench.ReadProcCPU(proc.Pid)
		if err != nil {
			return 0
		}
		return cpu
	})
	if err := proc.WaitHealthy(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	o.Step("[%s] waiting for the scheduler (pods still unbound after %s without a binding count as pending)", o.Profile, o.Settle)
	watcher.wait(ctx, pods, o.Settle, o.Timeout, func(bound int) {
		o.Step("[%s] %d/%d pods bound", o.Profile, bound, pods)
	})
	select {
	case <-proc.Exited():
		return nil, fmt.Errorf("the scheduler process %d exited while placing the pods (its output is in the control plane's log)", proc.Pid)
	default:
	}
	mem, err := bench.ReadProcMemory(proc.Pid)
	if err != nil {
		return nil, fmt.Errorf("reading the scheduler's memory: %w", err)
	}
	res := newResult(o.Profile, built, want, watcher, start)
	res.SchedulerProcess, res.SchedulerPID, res.Memory = true, proc.Pid, &mem
	if err := scrapeProcess(ctx, proc, schedulerName, res); err != nil {
		return nil, err
	}
	if o.Inspect != nil {
		if err := o.Inspect(ctx, cp.Config); err != nil {
			return nil, err
		}
	}
	if err := proc.Stop(); err != nil {
		return nil, err
	}
	w := watcher.window()
	if res.Scheduled > 1 {
		sched := w.lastChild - w.firstChild
		res.Profiled = true
		if res.ProcessCPU > 0 {
			res.SchedulerCPUShare = float64(sched) / float64(res.ProcessCPU)
		}
		res.SchedulerCPUPerPod = sched / time.Duration(res.Scheduled)
	} else {
		res.NotProfiled = "fewer than two bindings: no window"
	}
	return res, nil
}

// scrapeProcess reads the Go heap and the attempt latencies from the
// scheduler process's /metrics. The scheduler counts an attempt once its
// binding has returned, a moment after the pod informer sees the binding,
// so the scrape is repeated for up to ten seconds until every bound pod's
// attempt is counted.
func scrapeProcess(ctx context.Context, proc *controlplane.SchedulerProcess, schedulerName string, res *Result) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		text, err := proc.Metrics(ctx)
		if err != nil {
			res.Memory.HeapNotRead = err.Error()
			return nil
		}
		families, err := bench.ParseMetrics(text)
		if err != nil {
			res.Memory.HeapNotRead = fmt.Sprintf("parsing %s: %v", proc.MetricsURL, err)
			return nil
		}
		if heap, err := bench.GaugeValue(families, heapMetric); err != nil {
			res.Memory.HeapNotRead = err.Error()
		} else {
			res.Memory.HeapInuse, res.Memory.HeapNotRead = uint64(heap), ""
		}
		// A fresh process: its histogram is this run's alone.
		for _, result := range []string{"scheduled", "unschedulable", "error"} {
			h, found, err := bench.HistogramOf(families, attemptMetric, map[string]string{"result": result, "profile": schedulerName})
			if err != nil {
				return err
			}
			if found {
				res.Attempts[result] = h
			}
		}
		if res.Attempts["scheduled"].Count >= uint64(res.Scheduled) || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// The pprof label on the scheduler's goroutines.
const (
	cpuLabelKey       = "tandem.bench/component"
	cpuLabelScheduler = "scheduler"
)

// minProfiled is the least CPU time the profile segments covering the
// window must have sampled (20 samples at runtime/pprof's 100 Hz) to
// attribute a share.
const minProfiled = 200 * time.Millisecond

// cpuSegment is one CPU profile of the process and what it says.
type cpuSegment struct {
	bench.CPUSegment
	profile []byte
}

// cpuSegments profiles the process in back-to-back segments until stopped.
type cpuSegments struct {
	stopc chan struct{}
	done  chan struct{}
	segs  []cpuSegment
	err   error
}

func startSegments(length time.Duration) *cpuSegments {
	c := &cpuSegments{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t0, cpu0 := time.Now(), processCPU()
		for {
			var buf bytes.Buffer
			if err := pprof.StartCPUProfile(&buf); err != nil {
				c.err = fmt.Errorf("no CPU profile: %w", err)
				return
			}
			stopping := false
			select {
			case <-time.After(length):
			case <-c.stopc:
				stopping = true
			}
			pprof.StopCPUProfile()
			t1, cpu1 := time.Now(), processCPU()
			labeled, sampled, err := bench.LabeledCPU(buf.Bytes(), cpuLabelKey, cpuLabelScheduler)
			if err != nil {
				c.err = err
				return
			}
			c.segs = append(c.segs, cpuSegment{
				CPUSegment: bench.CPUSegment{Start: t0, End: t1, StartCPU: cpu0, EndCPU: cpu1, Labeled: labeled, Sampled: sampled},
				profile:    buf.Bytes(),
			})
			if stopping {
				return
			}
			t0, cpu0 = t1, cpu1
		}
	}()
	return c
}

// stop ends the profiling and returns the segments.
func (c *cpuSegments) stop() ([]cpuSegment, error) {
	close(c.stopc)
	<-c.done
	return c.segs, c.err
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const defaultConfig = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
`

func createNodes(ctx context.Context, cp *controlplane.ControlPlane, nodes []clusterdesc.Node) error {
	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		var mine []clusterdesc.Node
		for i := w; i < len(nodes); i += workers {
			mine = append(mine, nodes[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := clusterdesc.Create(ctx, cp.Client, cp.Tandem, mine); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func createPodGroups(ctx context.Context, cp *controlplane.ControlPlane, instances []bench.Instance) error {
	client, err := pgclient.NewForConfig(controlplane.JSONConfig(cp.Config))
	if err != nil {
		return err
	}
	for _, in := range instances {
		if in.Unit.Mode != bench.ModeReplica {
			continue
		}
		pg := &schedulingv1alpha1.PodGroup{
			ObjectMeta: metav1.ObjectMeta{Name: in.Name, Namespace: Namespace},
			Spec:       schedulingv1alpha1.PodGroupSpec{MinMember: int32(in.Unit.Prefill.Replicas + in.Unit.Decode.Replicas)},
		}
		if _, err := client.SchedulingV1alpha1().PodGroups(Namespace).Create(ctx, pg, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating PodGroup %s: %w", in.Name, err)
		}
	}
	return nil
}

// podFor is the engine pod every profile gets; only the scheduler name and,
// for the affinity baselines, the podAffinity differ.
func podFor(p bench.Pod, in bench.Instance, schedulerName string, profile Profile) *v1.Pod {
	gpus := *resource.NewQuantity(int64(p.GPUs), resource.DecimalSI)
	labels := map[string]string{pdaffinity.LabelRole: string(p.Role), pdaffinity.LabelGroup: in.Name}
	if in.Unit.Mode == bench.ModeReplica {
		labels[pdaffinity.LabelPodGroup] = in.Name
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: Namespace, Labels: labels},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			Containers: []v1.Container{{
				Name: "engine", Image: "vllm/vllm-openai:v0.11.0",
				Args: []string{"--tensor-parallel-size", fmt.Sprint(p.GPUs)},
				Resources: v1.ResourceRequirements{
					Requests: v1.ResourceList{clusterdesc.GPUResourceName: gpus, v1.ResourceCPU: resource.MustParse("8")},
					Limits:   v1.ResourceList{clusterdesc.GPUResourceName: gpus},
				},
			}},
		},
	}
	term := v1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{pdaffinity.LabelGroup: in.Name}},
		TopologyKey:   topology.LabelLeaf,
	}
	switch profile {
	case RequiredAffinity:
		pod.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{term}}}
	case PreferredAffinity:
		pod.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.WeightedPodAffinityTerm{{Weight: 100, PodAffinityTerm: term}}}}
	}
	return pod
}

// createPods creates the pods in order from a few workers, so that creation
// is not what limits throughput.
func createPods(ctx context.Context, cp *controlplane.ControlPlane, pods []*v1.Pod) error {
	const workers = 4
	next := make(chan *v1.Pod)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				if _, err := cp.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating pod %s: %w", p.Name, err)
					return
				}
			}
		}()
	}
	var err error
	for _, p := range pods {
		select {
		case next <- p:
			continue
		case err = <-errs:
		}
		break
	}
	close(next)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
	default:
	}
	return err
}

// bindingWatcher records when each pod was first seen bound, and the
// process's CPU time at the first and the latest binding.
type bindingWatcher struct {
	mu    sync.Mutex
	nodes map[string]string
	seen  map[string]bool
	// clock is set when the scheduler starts; bindings seen before it do
	// not open the window.
	clock time.Time
	// child, when set, is the CPU time of a scheduler running as a child
	// process: it counts in the process CPU and is sampled on its own.
	child  func() time.Duration
	w      bindingWindow
	change chan struct{}
	cancel context.CancelFunc
}

// bindingWindow is the first and the latest binding, with the process's
// CPU time at each.
type bindingWindow struct {
	first, last       time.Time
	firstCPU, lastCPU time.Duration
	// firstChild and lastChild are the child scheduler's CPU time then.
	firstChild, lastChild time.Duration
}

func watchBindings(ctx context.Context, cp *controlplane.ControlPlane) (*bindingWatcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &bindingWatcher{nodes: map[string]string{}, seen: map[string]bool{}, change: make(chan struct{}, 1), cancel: cancel}
	factory := informers.NewSharedInformerFactoryWithOptions(cp.Client, 0, informers.WithNamespace(Namespace))
	inf := factory.Core().V1().Pods().Informer()
	record := func(obj any) {
		pod, ok := obj.(*v1.Pod)
		if !ok {
			return
		}
		w.mu.Lock()
		w.seen[pod.Name] = true
		if _, bound := w.nodes[pod.Name]; !bound && pod.Spec.NodeName != "" {
			w.nodes[pod.Name] = pod.Spec.NodeName
			if !w.clock.IsZero() {
				now, cpu, child := time.Now(), processCPU(), time.Duration(0)
				if w.child != nil {
					child = w.child()
					cpu += child
				}
				if w.w.first.IsZero() {
					w.w.first, w.w.firstCPU, w.w.firstChild = now, cpu, child
				}
				w.w.last, w.w.lastCPU, w.w.lastChild = now, cpu, child
			}
		}
		w.mu.Unlock()
		select {
		case w.change <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		cancel()
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return nil, fmt.Errorf("the pod informer did not sync")
	}
	return w, nil
}

func (w *bindingWatcher) stop() { w.cancel() }

// startClock opens the window to bindings from t on.
func (w *bindingWatcher) startClock(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clock = t
}

// setChild counts a child scheduler's CPU time, read by cpu, from now on.
func (w *bindingWatcher) setChild(cpu func() time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.child = cpu
}

func (w *bindingWatcher) window() bindingWindow {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w
}

func (w *bindingWatcher) bound() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.nodes))
	for k, v := range w.nodes {
		out[k] = v
	}
	return out
}

// waitSeen waits until the informer has seen want pods.
func (w *bindingWatcher) waitSeen(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		n := len(w.seen)
		w.mu.Unlock()
		if n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pod informer saw %d of the %d pods created within %s", n, want, timeout)
		}
		select {
		case <-w.change:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wait returns once all want pods are bound, no pod bound for settle, or
// timeout passed. progress is called every few seconds while the count
// changes.
func (w *bindingWatcher) wait(ctx context.Context, want int, settle, timeout time.Duration, progress func(bound int)) {
	deadline := time.After(timeout)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	quietSince := time.Now()
	lastCount, printed := -1, 0
	for {
		w.mu.Lock()
		n := len(w.nodes)
		w.mu.Unlock()
		if n != lastCount {
			lastCount, quietSince = n, time.Now()
		}
		if n >= want || time.Since(quietSince) >= settle {
			return
		}
		select {
		case <-w.change:
		case <-tick.C:
			if n != printed {
				progress(n)
				printed = n
			}
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// attempts snapshots the attempt latency histogram of one profile, by result.
func attempts(profile string) (map[string]bench.Histogram, error) {
	out := map[string]bench.Histogram{}
	for _, result := range []string{"scheduled", "unschedulable", "error"} {
		vec, err := testutil.GetHistogramVecFromGatherer(legacyregistry.DefaultGatherer, attemptMetric, map[string]string{"result": result, "profile": profile})
		if err != nil {
			// Not registered yet, or no observation with these labels.
			continue
		}
		var sum bench.Histogram
		for _, h := range vec {
			one := bench.Histogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
			for _, b := range h.GetBucket() {
				one.Buckets = append(one.Buckets, bench.Bucket{UpperBound: b.GetUpperBound(), Count: b.GetCumulativeCount()})
			}
			if sum, err = sum.Add(one); err != nil {
				return nil, fmt.Errorf("%s: %w", attemptMetric, err)
			}
		}
		out[result] = sum
	}
	return out, nil
}

// startScheduler runs the scheduler from configPath with the client rate
// limit lifted, as scheduler_perf does.
func startScheduler(tb *controlplane.ProcessTB, cp *controlplane.ControlPlane, configPath string, clk *testingclock.FakePassiveClock, qps float32) error {
	if err := cp.StartSchedulerWith(tb, configPath, clk, controlplane.SchedulerOptions{ClientQPS: qps}); err != nil {
		return fmt.Errorf("starting the scheduler from %s: %w", configPath, err)
	}
	return nil
}

// QuietKlog sends klog, which the apiserver test helpers turn up to -v=5 on
// import, to w at -v=0.
func QuietKlog(w io.Writer) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", "0")
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	if f := flag.Lookup("v"); f != nil {
		_ = f.Value.Set("0")
	}
	klog.SetOutput(w)
}
