// Command demo runs tandem end to end on this machine: an in-process etcd and
// kube-apiserver, a fake GPU cluster, the tandem scheduler from the shipped
// configuration, and a few prefill/decode groups; it reports where each pod
// landed and how fast each prefill's KV cache would reach its decode.
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

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/scheduler"
	"github.com/tandem-sched/tandem/pkg/topology"
	"github.com/tandem-sched/tandem/test/integration/framework"
)

//go:embed cluster.yaml
var defaultCluster []byte

// promptTokens is the prompt length the report prices KV transfers for.
const promptTokens = 4096

func main() {
	clusterFile := flag.String("cluster", "", "cluster description YAML (default: the embedded two-spine cluster)")
	groups := flag.Int("groups", 3, "number of 1P1D groups, each engine TP=4")
	verbose := flag.Bool("v-control-plane", false, "print the control plane's logs")
	flag.Parse()
	if err := run(*clusterFile, *groups, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(clusterFile string, groups int, verbose bool) error {
	data := defaultCluster
	if clusterFile != "" {
		var err error
		if data, err = os.ReadFile(clusterFile); err != nil {
			return err
		}
	}
	desc, err := clusterdesc.Parse(data)
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
	if verbose {
		logOut = io.MultiWriter(logFile, os.Stderr)
	}
	quietKlog(logOut)

	tb := &framework.ProcessTB{Output: logOut}
	defer tb.Close()
	step("control plane logs go to %s", logPath)
	return tb.Run(func() {
		step("starting etcd and kube-apiserver in this process")
		cp := framework.StartControlPlane(tb)
		ctx := context.Background()
		nodes := desc.Build(time.Now())
		step("creating %d nodes and their NodeTopology objects", len(nodes))
		if err := clusterdesc.Create(ctx, cp.Client, cp.Tandem, nodes); err != nil {
			tb.Fatal(err)
		}
		step("starting tandem-scheduler from manifests/scheduler/scheduler-config.yaml")
		if err := cp.StartScheduler(tb, framework.ShippedSchedulerConfig(), clock.RealClock{}); err != nil {
			tb.Fatal(err)
		}
		step("creating %d prefill/decode groups (1 prefill + 1 decode, 4 GPUs each)", groups)
		var pods []string
		for g := 0; g < groups; g++ {
			group := fmt.Sprintf("llama-%d", g)
			for _, role := range []pdaffinity.Role{pdaffinity.RolePrefill, pdaffinity.RoleDecode} {
				name := fmt.Sprintf("%s-%s", group, role)
				if err := createEngine(ctx, cp, name, group, role); err != nil {
					tb.Fatal(err)
				}
				pods = append(pods, name)
			}
		}
		step("waiting for the scheduler to place them")
		placed, err := waitForPlacement(ctx, cp, pods)
		if err != nil {
			tb.Fatal(err)
		}
		nodeByName := map[string]*v1.Node{}
		var untrusted []string
		for _, n := range nodes {
			nodeByName[n.Node.Name] = n.Node
			if _, gpus := n.Node.Status.Capacity[clusterdesc.GPUResourceName]; gpus && !fresh(n) {
				untrusted = append(untrusted, n.Node.Name)
			}
		}
		report(os.Stdout, placed, nodeByName, groups, untrusted)
	})
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

// quietKlog sends klog, which the apiserver test helpers turn up to -v=5, to w.
func quietKlog(w io.Writer) {
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

func createEngine(ctx context.Context, cp *framework.ControlPlane, name, group string, role pdaffinity.Role) error {
	gpus := *resource.NewQuantity(4, resource.DecimalSI)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{pdaffinity.LabelRole: string(role), pdaffinity.LabelGroup: group},
		},
		Spec: v1.PodSpec{
			SchedulerName: scheduler.SchedulerName,
			Containers: []v1.Container{{
				Name: "vllm", Image: "vllm/vllm-openai:v0.11.0",
				Args: []string{"--model", "meta-llama/Llama-3.3-70B-Instruct", "--tensor-parallel-size", "4"},
				Resources: v1.ResourceRequirements{
					Requests: v1.ResourceList{clusterdesc.GPUResourceName: gpus, v1.ResourceCPU: resource.MustParse("8")},
					Limits:   v1.ResourceList{clusterdesc.GPUResourceName: gpus},
				},
			}},
		},
	}
	_, err := cp.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	return err
}

func waitForPlacement(ctx context.Context, cp *framework.ControlPlane, names []string) (map[string]string, error) {
	placed := map[string]string{}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			if placed[name] != "" {
				continue
			}
			pod, err := cp.Client.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			placed[name] = pod.Spec.NodeName
		}
		return len(placed) == len(names) && !hasEmpty(placed), nil
	})
	if err != nil {
		return placed, fmt.Errorf("not every pod was placed within two minutes: %v", placed)
	}
	return placed, nil
}

func hasEmpty(m map[string]string) bool {
	for _, v := range m {
		if v == "" {
			return true
		}
	}
	return false
}

// fresh says whether a node's NodeTopology exists and was confirmed recently.
func fresh(n clusterdesc.Node) bool {
	return n.Topology != nil && time.Since(n.Topology.Status.LastHeartbeatTime.Time) < time.Minute
}

func report(w io.Writer, placed map[string]string, nodes map[string]*v1.Node, groups int, untrusted []string) {
	model := topology.DefaultCostModel()
	levels := model.Levels
	kv := topology.Llama3_70B_BF16().KVBytes(promptTokens)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Placement")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNODE\tSPINE\tLEAF\tNVLINK DOMAIN")
	names := make([]string, 0, len(placed))
	for name := range placed {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l := nodes[placed[name]].Labels
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, placed[name], dash(l[topology.LabelSpine]), dash(l[topology.LabelLeaf]), dash(l[topology.LabelNVLinkDomain]))
	}
	tw.Flush()

	fmt.Fprintln(w)
	fmt.Fprintf(w, "KV cache, prefill -> decode (Llama-3-70B BF16, %d-token prompt = %.2f GB)\n", promptTokens, kv/1e9)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tPATH CLASS\tBANDWIDTH\tTRANSFER TIME")
	var total time.Duration
	for g := 0; g < groups; g++ {
		group := fmt.Sprintf("llama-%d", g)
		p := nodes[placed[group+"-prefill"]].Labels
		d := nodes[placed[group+"-decode"]].Labels
		class := levels.Classify(levels.PathOf(p), levels.PathOf(d), topology.GPUDirectRDMAReady(p), topology.GPUDirectRDMAReady(d))
		t := model.TransferTime(kv, class)
		total += t
		fmt.Fprintf(tw, "%s\t%s\t%.0f GB/s\t%s\n", group, class, model.Bandwidth(class)/1e9, t.Round(10*time.Microsecond))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nMean modeled KV-transfer time per request: %s\n", (total / time.Duration(groups)).Round(10*time.Microsecond))
	for _, name := range untrusted {
		var on []string
		for pod, node := range placed {
			if node == name {
				on = append(on, pod)
			}
		}
		if len(on) > 0 {
			fmt.Fprintf(w, "WARNING: %s has no fresh NodeTopology but holds %s\n", name, strings.Join(on, ", "))
		} else {
			fmt.Fprintf(w, "%s has GPUs but no fresh NodeTopology: NVLinkTopo kept every GPU pod off it.\n", name)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
