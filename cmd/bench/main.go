// Command bench places one disaggregated-inference workload on one GPU
// cluster four ways — kube-scheduler's default profile, the default profile
// with required and with preferred leaf podAffinity among an instance's pods,
// and tandem — each on a fresh in-process control plane where every pod
// exists before the scheduler starts, and reports the scheduler's capacity
// (time to first binding, throughput and CPU per pod over the window from
// the first binding to the last, attempt latency), where each prefill's KV
// cache has to travel, GPUs left stranded, pods left pending, and how far
// that is from the optimum: exact for small instances, a stated lower bound
// always. docs/benchmark.md describes the inputs and every figure.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/bench/run"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/topology"
)

func main() {
	var o opts
	flag.IntVar(&o.nodes, "nodes", 100, "size of the generated cluster (spines × leaves of HGX H100 boards and GB200 NVL72 racks); ignored with --cluster")
	flag.StringVar(&o.cluster, "cluster", "", "cluster description YAML (pkg/clusterdesc format) instead of a generated cluster")
	flag.StringVar(&o.workload, "workload", filepath.Join(controlplane.RepoRoot(), "docs", "examples", "workload.yaml"), "workload description YAML")
	flag.StringVar(&o.profiles, "profiles", "all", "comma-separated profiles to run: "+profileNames()+", or all")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.pairsOut, "pairs", "", "also write every profile's prefill→decode pairs (path class, modeled transfer) to this file, one JSON object a line")
	flag.DurationVar(&o.settle, "settle", 20*time.Second, "once every pod is created, how long without a binding before the rest count as pending")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "longest wait for bindings per profile")
	qps := flag.Float64("scheduler-qps", 5000, "the scheduler's client QPS and burst (scheduler_perf uses 5000; kube-scheduler's default is 50)")
	flag.IntVar(&o.budget, "optimum-budget", bench.DefaultOptimumBudget, "search nodes the exact optimum may expand")
	flag.BoolVar(&o.verbose, "v-control-plane", false, "print the control plane's logs")
	flag.Float64Var(&o.held, "held", 0, "share of the cluster's GPUs that pods of another tenant hold before the workload, scattered over GPU nodes (0 to below 1)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the random placement of --held")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write each run's CPU profile of its measured window here, the profile's name before the extension (cpu.pprof: cpu.tandem.pprof, ...)")
	flag.StringVar(&o.schedulerBinary, "scheduler-binary", "", "run the scheduler as a child process from this binary (go build ./cmd/scheduler) and report its memory (VmRSS, VmHWM, Go heap) once the pods are bound; its CPU time is then the scheduler's")
	flag.Parse()
	o.qps = float32(*qps)
	if err := o.run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

type opts struct {
	nodes             int
	cluster, workload string
	profiles, jsonOut string
	pairsOut          string
	settle, timeout   time.Duration
	qps               float32
	budget            int
	verbose           bool
	held              float64
	seed              uint64
	cpuProfile        string
	schedulerBinary   string
}

func profileNames() string {
	var names []string
	for _, p := range run.Profiles {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

func (o opts) selected() ([]run.Profile, error) {
	if o.profiles == "all" {
		return run.Profiles, nil
	}
	var out []run.Profile
	for _, name := range strings.Split(o.profiles, ",") {
		found := false
		for _, p := range run.Profiles {
			if string(p) == strings.TrimSpace(name) {
				out, found = append(out, p), true
			}
		}
		if !found {
			return nil, fmt.Errorf("--profiles: unknown profile %q, want %s or all", name, profileNames())
		}
	}
	return out, nil
}

// Report is the JSON output.
type Report struct {
	Cluster string `json:"cluster"`
	Nodes   int    `json:"nodes"`
	GPUs    int    `json:"gpus"`
	// HeldGPUs are held by other tenants before the workload (--held and
	// the description's allocatedGPUs); Seed placed --held.
	HeldGPUs  int             `json:"heldGPUs"`
	HeldShare float64         `json:"heldShare,omitempty"`
	Seed      uint64          `json:"seed"`
	Workload  *bench.Workload `json:"workload"`
	KVBytes   float64         `json:"kvBytesPerRequest"`
	Runs      []RunReport     `json:"runs"`
	Optimum   *bench.Optimum  `json:"optimum,omitempty"`
	Skipped   string          `json:"optimumSkipped,omitempty"`
	// Bound is the lower bound on every decode's KV transfer
	// (bench.Analyzer.Bound), over the whole workload.
	Bound  bench.Bound       `json:"bound"`
	Ratios map[string]Ratios `json:"tandemVersus,omitempty"`
}

// RunReport is one profile's figures.
type RunReport struct {
	*run.Result
	Quality      bench.Quality `json:"quality"`
	AttemptP50   time.Duration `json:"attemptP50Nanos"`
	AttemptP99   time.Duration `json:"attemptP99Nanos"`
	Unschedulble uint64        `json:"unschedulableAttempts"`
	NVLinkShare  float64       `json:"nvlinkShare"`
	// Bound is the lower bound over the decodes this run paired; the
	// ratios are this run's figure ÷ the bound's (KV mean: 1 or more;
	// NVLink share: 1 or less).
	Bound           bench.BoundOver `json:"bound"`
	KVMeanToBound   float64         `json:"kvMeanToBound"`
	NVLinkToBound   float64         `json:"nvlinkShareToBound"`
	KVMeanToOptimum float64         `json:"kvMeanToOptimum,omitempty"`
}

// Ratios compare an alternative with tandem: above 1 means tandem is better
// (faster transfers, more throughput, less CPU, lower latency).
type Ratios struct {
	KVMean         float64 `json:"kvMean"`
	KVP99          float64 `json:"kvP99"`
	Throughput     float64 `json:"throughput"`
	CPUPerPod      float64 `json:"processCPUPerPod"`
	SchedCPUPerPod float64 `json:"schedulerCPUPerPod"`
	AttemptP99     float64 `json:"attemptP99"`
}

func (o opts) run() error {
	profiles, err := o.selected()
	if err != nil {
		return err
	}
	if o.schedulerBinary != "" {
		if o.cpuProfile != "" {
			return fmt.Errorf("--cpuprofile profiles this process, where the scheduler does not run with --scheduler-binary")
		}
		abs, err := filepath.Abs(o.schedulerBinary)
		if err != nil {
			return fmt.Errorf("--scheduler-binary: %w", err)
		}
		if fi, err := os.Stat(abs); err != nil {
			return fmt.Errorf("--scheduler-binary: %w", err)
		} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("--scheduler-binary: %s is not an executable file", abs)
		}
		o.schedulerBinary = abs
	}
	desc, name, err := o.loadCluster()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(o.workload)
	if err != nil {
		return err
	}
	wl, err := bench.ParseWorkload(data)
	if err != nil {
		return fmt.Errorf("%s: %w", o.workload, err)
	}
	built := desc.Build(time.Now())
	if o.held > 0 {
		if _, err := bench.HoldGPUs(built, o.held, o.seed); err != nil {
			return fmt.Errorf("--held: %w", err)
		}
	}
	nodes := bench.NodesOf(built)
	gpus := 0
	for _, n := range nodes {
		gpus += n.GPUs
	}
	held := bench.HeldGPUs(nodes)
	// fill is a share of what the other tenants left free.
	wl = wl.Scaled(gpus - held)

	logPath := filepath.Join(os.TempDir(), "tandem-bench.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	var logOut io.Writer = logFile
	if o.verbose {
		logOut = io.MultiWriter(logFile, os.Stderr)
	} else {
		// The apiserver's etcd client logs to stderr on its own.
		stderr := os.Stderr
		os.Stderr = logFile
		defer func() { os.Stderr = stderr }()
	}
	run.QuietKlog(logOut)
	step("control plane logs go to %s", logPath)
	step("cluster %s: %d nodes, %d GPUs, %d of them held by another tenant", name, len(nodes), gpus, held)
	step("workload: %s = %d instances, %d GPUs", wl, len(wl.Instances()), wl.GPUs())

	a := bench.Analyzer{Model: topology.DefaultCostModel(), KVBytes: wl.KVBytes(), SmallestEngine: wl.SmallestEngine()}
	rep := Report{Cluster: name, Nodes: len(nodes), GPUs: gpus, HeldGPUs: held, HeldShare: o.held, Seed: o.seed,
		Workload: wl, KVBytes: wl.KVBytes(), Ratios: map[string]Ratios{}}
	rep.Bound = a.Bound(nodes, wl.Instances())
	step("exact optimum (at most %d GPU nodes and %d instances)", bench.MaxOptimumNodes, bench.MaxOptimumInstances)
	if opt, err := a.Optimum(nodes, wl.Instances(), o.budget); err != nil {
		rep.Skipped = err.Error()
	} else {
		rep.Optimum = opt
	}
	for _, p := range profiles {
		ro := run.Options{
			Cluster: desc, Workload: wl, Profile: p, Settle: o.settle, Timeout: o.timeout,
			SchedulerQPS: o.qps, HeldShare: o.held, Seed: o.seed, Log: logOut, Step: step,
			SchedulerBinary: o.schedulerBinary,
		}
		if o.cpuProfile != "" {
			ext := filepath.Ext(o.cpuProfile)
			ro.CPUProfile = strings.TrimSuffix(o.cpuProfile, ext) + "." + string(p) + ext
		}
		res, err := run.Run(context.Background(), ro)
		if err != nil {
			return fmt.Errorf("profile %s: %w", p, err)
		}
		if res.HeldGPUs != held {
			return fmt.Errorf("profile %s: %d GPUs held, but %d when the run was planned", p, res.HeldGPUs, held)
		}
		r := RunReport{Result: res, Quality: a.Analyze(res.Nodes, res.Pods)}
		if o.pairsOut != "" {
			if err := writePairs(o.pairsOut, p, r.Quality.Pairs); err != nil {
				return err
			}
		}
		h := res.Attempts["scheduled"]
		r.AttemptP50, r.AttemptP99 = h.QuantileDuration(0.5), h.QuantileDuration(0.99)
		r.Unschedulble = res.Attempts["unschedulable"].Count
		r.NVLinkShare = a.NVLinkShare(r.Quality)
		r.Bound = rep.Bound.Over(a, r.Quality)
		r.KVMeanToBound = ratio(float64(r.Quality.MeanTransfer), float64(r.Bound.Mean))
		r.NVLinkToBound = ratio(r.NVLinkShare, r.Bound.NVLinkShare)
		if rep.Optimum != nil {
			r.KVMeanToOptimum = ratio(float64(r.Quality.MeanTransfer), float64(rep.Optimum.Mean))
		}
		rep.Runs = append(rep.Runs, r)
		step("[%s] done: %d/%d bound, %.1f pods/s, mean KV transfer %s", p, res.Scheduled, len(res.Pods), res.Throughput, bench.Millis(r.Quality.MeanTransfer))
		if m := res.Memory; m != nil {
			step("[%s] scheduler process: RSS %s, peak RSS %s, Go heap in use %s", p, mib(m.RSS), mib(m.PeakRSS), heapOf(*m))
		}
		if res.NotProfiled != "" {
			step("[%s] scheduler CPU not attributed: %s", p, res.NotProfiled)
		}
	}
	var tandem *RunReport
	for i := range rep.Runs {
		if rep.Runs[i].Profile == run.Tandem {
			tandem = &rep.Runs[i]
		}
	}
	if tandem != nil {
		for _, r := range rep.Runs {
			if r.Profile != run.Tandem {
				rep.Ratios[string(r.Profile)] = ratios(r, *tandem)
			}
		}
	}
	print(os.Stdout, rep)
	if o.jsonOut != "" {
		out, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(o.jsonOut), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(out, '\n'), 0o644); err != nil {
			return err
		}
		step("wrote %s", o.jsonOut)
	}
	return nil
}

func (o opts) loadCluster() (*clusterdesc.Cluster, string, error) {
	if o.cluster == "" {
		c, err := bench.GenerateCluster(o.nodes)
		return c, fmt.Sprintf("generated-%d", o.nodes), err
	}
	data, err := os.ReadFile(o.cluster)
	if err != nil {
		return nil, "", err
	}
	c, err := clusterdesc.Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", o.cluster, err)
	}
	return c, o.cluster, nil
}

func ratio(alt, tandem float64) float64 {
	if tandem == 0 {
		return 0
	}
	return alt / tandem
}

func ratios(alt, tandem RunReport) Ratios {
	return Ratios{
		KVMean:         ratio(float64(alt.Quality.MeanTransfer), float64(tandem.Quality.MeanTransfer)),
		KVP99:          ratio(float64(alt.Quality.P99Transfer), float64(tandem.Quality.P99Transfer)),
		Throughput:     ratio(tandem.Throughput, alt.Throughput),
		CPUPerPod:      ratio(float64(alt.ProcessCPUPerPod), float64(tandem.ProcessCPUPerPod)),
		SchedCPUPerPod: schedRatio(alt, tandem),
		AttemptP99:     ratio(float64(alt.AttemptP99), float64(tandem.AttemptP99)),
	}
}

func schedRatio(alt, tandem RunReport) float64 {
	if !alt.Profiled || !tandem.Profiled {
		return 0
	}
	return ratio(float64(alt.SchedulerCPUPerPod), float64(tandem.SchedulerCPUPerPod))
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func print(w io.Writer, rep Report) {
	fmt.Fprintf(w, "\nCluster %s: %d nodes, %d GPUs, %d held by another tenant before the workload. Workload: %d GPUs asked; KV per request %.2f GB.\n",
		rep.Cluster, rep.Nodes, rep.GPUs, rep.HeldGPUs, rep.Workload.GPUs(), rep.KVBytes/1e9)
	fmt.Fprintln(w, "Every pod exists before the scheduler starts. Window: first binding to last. CPU: the whole process (etcd, apiserver, scheduler); sched.: the scheduler's profiled share of it.")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "profile\tbound\tpending\tfirst binding\twindow\tpods/s\tCPU/pod\tsched. CPU/pod\tsched. share\tattempt p50\tattempt p99\tunsched.\t\n")
	for _, r := range rep.Runs {
		q := r.Quality
		share, sched := "-", "-"
		if r.Profiled {
			share, sched = fmt.Sprintf("%.0f%%", 100*r.SchedulerCPUShare), bench.Millis(r.SchedulerCPUPerPod)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", r.Profile, q.Bound, q.Pending,
			seconds(r.FirstBinding), seconds(r.Window), r.Throughput, bench.Millis(r.ProcessCPUPerPod), sched, share,
			bench.Millis(r.AttemptP50), bench.Millis(r.AttemptP99), r.Unschedulble)
	}
	tw.Flush()
	fmt.Fprintln(w)
	printMemory(w, rep)

	classes := bench.PathClasses(topology.DefaultLevels())
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "profile\t")
	for _, c := range classes {
		fmt.Fprintf(tw, "%s\t", c)
	}
	fmt.Fprint(tw, "unpaired\tKV mean\tKV p99\tfree GPUs\tstranded\t\n")
	for _, r := range rep.Runs {
		q := r.Quality
		fmt.Fprintf(tw, "%s\t", r.Profile)
		for _, c := range classes {
			fmt.Fprintf(tw, "%.0f%%\t", 100*q.Share(c))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t\n", q.Classes[bench.PathClassUnpaired], bench.Millis(q.MeanTransfer), bench.Millis(q.P99Transfer), q.FreeGPUs, q.StrandedGPUs)
	}
	tw.Flush()
	fmt.Fprintln(w)

	b := rep.Bound
	fmt.Fprintf(w, "Lower bound (each prefill→decode pair alone on the GPUs free at the start): mean KV transfer %s, NVLink share at most %.0f%%, over %d pairs",
		bench.Millis(b.Mean), 100*b.NVLinkShare, b.Pairs)
	if b.Infeasible > 0 {
		fmt.Fprintf(w, "; %d pairs can be made nowhere", b.Infeasible)
	}
	fmt.Fprintln(w, ".")
	if rep.Optimum != nil {
		opt := rep.Optimum
		proven := "proven"
		if !opt.Proven {
			proven = "search budget exhausted: best found, not proven"
		}
		fmt.Fprintf(w, "Offline optimum (%s, %d search nodes): %d instances left out (%d GPUs), mean KV transfer %s over %d pairs.\n",
			proven, opt.Expansions, opt.Unplaced, opt.UnplacedGPUs, bench.Millis(opt.Mean), opt.Pairs)
	} else {
		fmt.Fprintf(w, "Offline optimum skipped: %s.\n", rep.Skipped)
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "profile\tKV mean\tbound on its pairs\tmean ÷ bound\tNVLink share\tbound share\tshare ÷ bound\t")
	if rep.Optimum != nil {
		fmt.Fprint(tw, "mean ÷ optimum\t")
	}
	fmt.Fprint(tw, "pending\t\n")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f%%\t%.0f%%\t%s\t", r.Profile, bench.Millis(r.Quality.MeanTransfer), bench.Millis(r.Bound.Mean),
			orDash(r.Bound.Mean > 0, "%.2f×", r.KVMeanToBound), 100*r.NVLinkShare, 100*r.Bound.NVLinkShare,
			orDash(r.Bound.NVLinkShare > 0, "%.2f", r.NVLinkToBound))
		if rep.Optimum != nil {
			fmt.Fprintf(tw, "%s\t", orDash(rep.Optimum.Mean > 0, "%.2f×", r.KVMeanToOptimum))
		}
		fmt.Fprintf(tw, "%d\t\n", r.Quality.Pending)
	}
	tw.Flush()

	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w, "\nTandem versus each alternative (above 1: tandem is better by that factor):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "alternative\tKV mean\tKV p99\tthroughput\tCPU/pod\tsched. CPU/pod\tattempt p99\t\n")
		for _, r := range rep.Runs {
			if x, ok := rep.Ratios[string(r.Profile)]; ok {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Profile, times(x.KVMean), times(x.KVP99), times(x.Throughput),
					times(x.CPUPerPod), times(x.SchedCPUPerPod), times(x.AttemptP99))
			}
		}
		tw.Flush()
	}
}

// printMemory lists the scheduler process's memory of the runs that ran it
// as a child (--scheduler-binary).
func printMemory(w io.Writer, rep Report) {
	sampled := false
	for _, r := range rep.Runs {
		sampled = sampled || r.Memory != nil
	}
	if !sampled {
		return
	}
	fmt.Fprintln(w, "The scheduler as its own process, sampled once the pods are bound or settled (RSS: VmRSS; peak: VmHWM, since its start; heap: go_memstats_heap_inuse_bytes). Its CPU is its own; CPU/pod adds it to this process's.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "profile\tnodes\tRSS\tpeak RSS\tGo heap in use\t\n")
	for _, r := range rep.Runs {
		if m := r.Memory; m != nil {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", r.Profile, rep.Nodes, mib(m.RSS), mib(m.PeakRSS), heapOf(*m))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func mib(b uint64) string {
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func heapOf(m bench.ProcessMemory) string {
	if m.HeapInuse == 0 {
		return "- (" + m.HeapNotRead + ")"
	}
	return mib(m.HeapInuse)
}

// times renders a ratio; 0 stands for one that is undefined (a zero
// denominator, or a figure not measured).
func times(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f×", x)
}

// orDash renders x when it is defined.
func orDash(defined bool, format string, x float64) string {
	if !defined {
		return "-"
	}
	return fmt.Sprintf(format, x)
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// writePairs appends one profile's pairs to path, a JSON object a line.
func writePairs(path string, p run.Profile, pairs []bench.Pair) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("--pairs: %w", err)
	}
	enc := json.NewEncoder(f)
	for _, pair := range pairs {
		if err := enc.Encode(struct {
			Profile run.Profile `json:"profile"`
			bench.Pair
		}{p, pair}); err != nil {
			f.Close()
			return fmt.Errorf("--pairs: %w", err)
		}
	}
	return f.Close()
}
