// Command demo runs tandem end to end on this machine: an in-process etcd and
// kube-apiserver, a fake GPU cluster of HGX H100 boards and a GB200 NVL72
// rack under two spines, and one prefill/decode workload placed twice — by
// kube-scheduler's default profile, then by tandem's shipped profile, each
// on a fresh control plane. It reports where each instance landed, the path
// every prefill→decode KV transfer takes, and what that costs per request.
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/rest"

	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/bench/run"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/kubectltandem"
	"github.com/tandem-sched/tandem/pkg/topology"
)

//go:embed cluster.yaml
var defaultCluster []byte

//go:embed workload.yaml
var defaultWorkload []byte

func main() {
	clusterFile := flag.String("cluster", "", "cluster description YAML (default: the embedded two-spine cluster)")
	workloadFile := flag.String("workload", "", "workload description YAML (default: the embedded seven instances)")
	verbose := flag.Bool("v-control-plane", false, "print the control plane's logs")
	picture := flag.String("pairs-html", filepath.Join("bin", "demo-pairs.html"), "where to write `kubectl tandem pairs -o html` for tandem's run (\"\" for nowhere)")
	flag.Parse()
	if err := demo(*clusterFile, *workloadFile, *picture, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func readOr(file string, embedded []byte) ([]byte, error) {
	if file == "" {
		return embedded, nil
	}
	return os.ReadFile(file)
}

func demo(clusterFile, workloadFile, picture string, verbose bool) error {
	data, err := readOr(clusterFile, defaultCluster)
	if err != nil {
		return err
	}
	desc, err := clusterdesc.Parse(data)
	if err != nil {
		return err
	}
	if data, err = readOr(workloadFile, defaultWorkload); err != nil {
		return err
	}
	wl, err := bench.ParseWorkload(data)
	if err != nil {
		return err
	}

	logPath := filepath.Join(os.TempDir(), "tandem-demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	var logOut io.Writer = logFile
	stderr := os.Stderr
	if verbose {
		logOut = io.MultiWriter(logFile, os.Stderr)
	} else {
		// The apiserver's etcd client logs to stderr on its own.
		os.Stderr = logFile
		defer func() { os.Stderr = stderr }()
	}
	run.QuietKlog(logOut)
	step("control plane logs go to %s", logPath)

	nodes := bench.NodesOf(desc.Build(time.Now()))
	wl = wl.Scaled(0)
	step("workload: %s (%d GPUs of %d)", wl, wl.GPUs(), totalGPUs(nodes))
	a := bench.Analyzer{Model: topology.DefaultCostModel(), KVBytes: wl.KVBytes(), SmallestEngine: wl.SmallestEngine()}

	results := map[run.Profile]*run.Result{}
	for _, p := range []run.Profile{run.Default, run.Tandem} {
		var inspect func(context.Context, *rest.Config) error
		if p == run.Tandem && picture != "" {
			inspect = func(ctx context.Context, cfg *rest.Config) error {
				return writePicture(ctx, cfg, a, wl, picture)
			}
		}
		res, err := run.Run(context.Background(), run.Options{Cluster: desc, Workload: wl, Profile: p, Settle: 10 * time.Second, Timeout: 3 * time.Minute, Inspect: inspect, Log: logOut, Step: step})
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		results[p] = res
	}
	step("searching for the best possible placement (exact, offline)")
	opt, optErr := a.Optimum(nodes, wl.Instances(), 5_000_000)
	report(os.Stdout, a, wl, nodes, results[run.Default], results[run.Tandem], opt, optErr)
	if picture != "" {
		fmt.Printf("\nThe fabric and tandem's pairs, as `kubectl tandem pairs -o html` drew them before the control plane stopped: %s\n", picture)
	}
	return nil
}

// writePicture writes what `kubectl tandem pairs -o html` shows of the
// control plane, priced with the demo's cost model and request size.
func writePicture(ctx context.Context, cfg *rest.Config, a bench.Analyzer, wl *bench.Workload, path string) error {
	o := kubectltandem.DefaultOptions()
	o.Model = a.Model
	o.PromptTokens, o.BytesPerToken = wl.PromptTokens, wl.BytesPerToken()
	v, err := kubectltandem.CollectFrom(ctx, cfg, o)
	if err != nil {
		return fmt.Errorf("reading the cluster for %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := kubectltandem.HTML(f, v); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	step("[%s] wrote the fabric and its pairs to %s", run.Tandem, path)
	return nil
}

func totalGPUs(nodes []bench.Node) int {
	n := 0
	for _, node := range nodes {
		n += node.GPUs
	}
	return n
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func report(w io.Writer, a bench.Analyzer, wl *bench.Workload, nodes []bench.Node, def, tan *run.Result, opt *bench.Optimum, optErr error) {
	labels := map[string]map[string]string{}
	for _, n := range nodes {
		labels[n.Name] = n.Labels
	}
	where := func(node string) string {
		if node == "" {
			return "PENDING"
		}
		l := labels[node]
		return fmt.Sprintf("%s (%s/%s)", node, l[topology.LabelSpine], l[topology.LabelLeaf])
	}
	nodeOf := func(res *run.Result) map[string]string {
		out := map[string]string{}
		for _, p := range res.Pods {
			out[p.Name] = p.Node
		}
		return out
	}
	dn, tn := nodeOf(def), nodeOf(tan)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Where each pod landed")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tPOD\tDEFAULT SCHEDULER\tTANDEM")
	for _, in := range wl.Instances() {
		for _, p := range in.Pods() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", in.Name, strings.TrimPrefix(p.Name, in.Name+"-"), where(dn[p.Name]), where(tn[p.Name]))
		}
	}
	tw.Flush()

	dq, tq := a.Analyze(def.Nodes, def.Pods), a.Analyze(tan.Nodes, tan.Pods)
	pairs := func(q bench.Quality) map[string]bench.Pair {
		out := map[string]bench.Pair{}
		for _, p := range q.Pairs {
			out[p.Decode] = p
		}
		return out
	}
	dp, tp := pairs(dq), pairs(tq)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "KV cache, each decode from the nearest prefill of its instance (Llama-3-70B BF16, %d-token prompt = %.2f GB)\n", wl.PromptTokens, wl.KVBytes()/1e9)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DECODE\tDEFAULT: PATH\tTIME\tTANDEM: PATH\tTIME")
	var decodes []string
	for _, p := range def.Pods {
		if p.Role == bench.RoleDecode {
			decodes = append(decodes, p.Name)
		}
	}
	sort.Strings(decodes)
	cell := func(p bench.Pair, ok bool) string {
		switch {
		case !ok:
			return "pending\t-"
		case p.Transfer < 0:
			return "no prefill bound\t-"
		}
		return fmt.Sprintf("%s\t%s", p.Class, bench.Millis(p.Transfer))
	}
	for _, d := range decodes {
		pd, okd := dp[d]
		pt, okt := tp[d]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d, cell(pd, okd), cell(pt, okt))
	}
	tw.Flush()

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Summary")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tDEFAULT SCHEDULER\tTANDEM")
	fmt.Fprintf(tw, "pods bound\t%d of %d\t%d of %d\n", dq.Bound, dq.Pods, tq.Bound, tq.Pods)
	for _, c := range bench.PathClasses(a.Model.Levels) {
		if dq.Classes[c]+tq.Classes[c] > 0 {
			fmt.Fprintf(tw, "pairs over %s\t%d\t%d\n", c, dq.Classes[c], tq.Classes[c])
		}
	}
	fmt.Fprintf(tw, "KV transfer per request, mean\t%s\t%s\n", bench.Millis(dq.MeanTransfer), bench.Millis(tq.MeanTransfer))
	fmt.Fprintf(tw, "KV transfer per request, worst\t%s\t%s\n", bench.Millis(dq.P99Transfer), bench.Millis(tq.P99Transfer))
	fmt.Fprintf(tw, "free GPUs (stranded for TP=%d)\t%d (%d)\t%d (%d)\n", a.SmallestEngine, dq.FreeGPUs, dq.StrandedGPUs, tq.FreeGPUs, tq.StrandedGPUs)
	tw.Flush()
	fmt.Fprintln(w)
	if tq.MeanTransfer > 0 {
		fmt.Fprintf(w, "tandem's placement moves each request's KV cache %.1f× faster on average (%s less per request)",
			float64(dq.MeanTransfer)/float64(tq.MeanTransfer), bench.Millis(dq.MeanTransfer-tq.MeanTransfer))
		if dq.Pending > tq.Pending {
			fmt.Fprintf(w, ", and places %d pods the default scheduler left pending", dq.Pending-tq.Pending)
		}
		fmt.Fprintln(w, ".")
	}
	switch {
	case optErr != nil:
		fmt.Fprintf(w, "Best possible placement: not computed (%v).\n", optErr)
	case opt.Mean > 0:
		qual := ""
		if !opt.Proven {
			qual = " (search stopped early: best found, not proven optimal)"
		}
		fmt.Fprintf(w, "Best possible placement%s: %s per request with %d instances left out; tandem is %.2f× that.\n",
			qual, bench.Millis(opt.Mean), opt.Unplaced, float64(tq.MeanTransfer)/float64(opt.Mean))
	}
}
