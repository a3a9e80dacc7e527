package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/kubectltandem"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// kubectlTandem runs `kubectl tandem args...` against the control plane
// through its kubeconfig, as an operator would, and returns stdout.
func kubectlTandem(t *testing.T, cp *controlplane.ControlPlane, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := kubectltandem.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"--kubeconfig", cp.Kubeconfig}, args...))
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("kubectl tandem %s: %v; stderr: %s", strings.Join(args, " "), err, errOut.String())
	}
	if errOut.Len() > 0 {
		t.Errorf("kubectl tandem %s wrote to stderr: %s", strings.Join(args, " "), errOut.String())
	}
	return out.String()
}

// wantClass is the class of the path from a prefill to a decode, judged on
// the nodes' labels by the model's classifier.
func wantClass(placed map[string]map[string]string, prefill, decode string) topology.PathClass {
	levels := topology.DefaultLevels()
	pl, dl := placed[prefill], placed[decode]
	return levels.Classify(levels.PathOf(pl), levels.PathOf(dl), topology.GPUDirectRDMAReady(pl), topology.GPUDirectRDMAReady(dl))
}

func TestKubectlTandemShowsEveryNodeAndPair(t *testing.T) {
	// Leaf l1 has four HGX boards, leaf l2 (another spine) two, one of them
	// with GPUDirect RDMA broken. Unit u (2P2D, TP=4) takes two boards, a prefill
	// and a decode on each; unit
	// w (1P1D, TP=8) needs two boards.
	cp := startCluster(t, `
nodes:
- {name: l1, count: 4, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: l2, shape: hgx-h100, zone: z1, spine: s2, leaf: l2}
- {name: l2-broken, shape: hgx-h100, zone: z1, spine: s2, leaf: l2, gpuDirectBroken: true}
`)
	createPodGroup(t, cp, "u", 4, 0)
	createPodGroup(t, cp, "w", 2, 0)
	units := map[string][]string{
		"u": createUnit(t, cp, "u", 2, 2, 4, withLabels(pdaffinity.LabelPodGroup, "u")),
		"w": createUnit(t, cp, "w", 1, 1, 8, withLabels(pdaffinity.LabelPodGroup, "w")),
	}
	placed := map[string]map[string]string{}
	usedGPUs := map[string]int{}
	for unit, pods := range units {
		for p, l := range placements(t, cp, pods) {
			placed[p] = l
			usedGPUs[l[v1.LabelHostname]] += map[string]int{"u": 4, "w": 8}[unit]
		}
	}
	nodes, err := cp.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 6 {
		t.Fatalf("%d nodes, want 6", len(nodes.Items))
	}

	// JSON: every node with its free GPUs, every decode with its class.
	var v kubectltandem.View
	if err := json.Unmarshal([]byte(kubectlTandem(t, cp, "nodes", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Nodes) != len(nodes.Items) {
		t.Errorf("view has %d nodes, want %d", len(v.Nodes), len(nodes.Items))
	}
	for _, n := range v.Nodes {
		if want := 8 - usedGPUs[n.Name]; n.FreeGPUs != want || n.GPUs != 8 || !n.Reported {
			t.Errorf("node %s: %d of %d GPUs free (reported %v), want %d of 8", n.Name, n.FreeGPUs, n.GPUs, n.Reported, want)
		}
		if wantReady := n.Name != "l2-broken"; n.GPUDirectReady != wantReady {
			t.Errorf("node %s: GPUDirect ready %v, want %v", n.Name, n.GPUDirectReady, wantReady)
		}
		if n.Heartbeat == nil || n.HeartbeatAge > 5*time.Minute {
			t.Errorf("node %s: heartbeat %v, age %s: want a fresh one", n.Name, n.Heartbeat, n.HeartbeatAge)
		}
	}
	// A replica unit's pairs are every prefill with every decode.
	type pairKey struct{ unit, prefill, decode string }
	got := map[pairKey]kubectltandem.Pair{}
	for _, g := range v.Groups {
		for _, p := range g.Pairs {
			got[pairKey{g.Name, p.Prefill, p.Decode}] = p
		}
	}
	want := map[pairKey]topology.PathClass{}
	for unit, pods := range units {
		for _, d := range pods {
			for _, p := range pods {
				if strings.Contains(d, "-decode-") && strings.Contains(p, "-prefill-") {
					want[pairKey{unit, p, d}] = wantClass(placed, p, d)
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("pairs %v, want every prefill with every decode of its unit: %v", got, want)
	}
	model := topology.DefaultCostModel()
	for k, class := range want {
		p, ok := got[k]
		switch {
		case !ok:
			t.Errorf("no pair %s→%s of %s", k.prefill, k.decode, k.unit)
		case p.Class != class:
			t.Errorf("pair %s→%s: class %s, want %s", k.prefill, k.decode, p.Class, class)
		case p.DecodeNode != placed[k.decode][v1.LabelHostname] || p.PrefillNode != placed[k.prefill][v1.LabelHostname]:
			t.Errorf("pair %s→%s: %+v does not match the bindings", k.prefill, k.decode, p)
		case p.Transfer != model.TransferTime(v.KVBytes, class):
			t.Errorf("pair %s→%s: transfer %s, want the model's %s", k.prefill, k.decode, p.Transfer, model.TransferTime(v.KVBytes, class))
		}
	}
	// Unit u (2P2D of TP=4) fills two boards: each decode shares its board
	// with one prefill.
	for _, d := range []string{"u-decode-0", "u-decode-1"} {
		nvlink := 0
		for _, p := range []string{"u-prefill-0", "u-prefill-1"} {
			if want[pairKey{"u", p, d}] == topology.LevelNVLinkDomain {
				nvlink++
			}
		}
		if nvlink != 1 {
			t.Errorf("decode %s shares an NVLink domain with %d prefills of u, want 1 (a prefill on its board)", d, nvlink)
		}
	}

	// Tables: a line per node and per pair.
	nodesTable := kubectlTandem(t, cp, "nodes")
	for _, n := range nodes.Items {
		if !regexpLine(nodesTable, n.Name+" ") {
			t.Errorf("nodes table has no line for %s:\n%s", n.Name, nodesTable)
		}
	}
	if !strings.Contains(nodesTable, "NotReady (GPUDirect RDMA check acs: Fail") {
		t.Errorf("nodes table does not say why l2-broken is not ready:\n%s", nodesTable)
	}
	pairsTable := kubectlTandem(t, cp, "pairs")
	for k, class := range want {
		if !regexpLine(pairsTable, " "+k.prefill+" ", " "+k.decode+" ", " "+string(class)+" ") {
			t.Errorf("pairs table has no line for %s→%s over %s:\n%s", k.prefill, k.decode, class, pairsTable)
		}
	}

	// The page, in a browser: every node and every pair is an element.
	page := kubectlTandem(t, cp, "pairs", "-o", "html")
	nodeNames := []string{}
	for _, n := range nodes.Items {
		nodeNames = append(nodeNames, n.Name)
	}
	var pairs []string
	for k := range want {
		pairs = append(pairs, k.prefill+">"+k.decode)
	}
	checkPageInBrowser(t, page, nodeNames, pairs)
}

// regexpLine reports whether one line of out contains every part.
func regexpLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line+" ", p)
		}
		if all {
			return true
		}
	}
	return false
}

const chromiumPath = "/usr/bin/chromium"

// checkPageInBrowser serves page to headless Chromium and checks, in the
// DOM it builds, that the picture draws every node and every pair.
func checkPageInBrowser(t *testing.T, page string, nodes, pairs []string) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: CI must run hack/install-test-deps.sh before the tests", chromiumPath)
		}
		t.Skipf("%s is missing: run hack/install-test-deps.sh to check the HTML page in a browser", chromiumPath)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	defer srv.Close()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	if err := chromedp.Do(browser, chromedp.Navigate(srv.URL), chromedp.WaitVisible("#fabric")); err != nil {
		t.Fatalf("opening the page in %s: %v", chromiumPath, err)
	}
	// attrs reads, for every element selector matches, its attributes
	// joined by ">".
	attrs := func(selector string, attr ...string) []string {
		t.Helper()
		names, _ := json.Marshal(attr)
		expr := `Array.from(document.querySelectorAll(` + jsString(selector) + `)).map(e => ` + string(names) + `.map(a => e.getAttribute(a)).join(">"))`
		got, err := chromedp.Run(browser, chromedp.Evaluate[[]string](expr))
		if err != nil {
			t.Fatalf("reading %s of %s in the page: %v", attr, selector, err)
		}
		return got
	}
	gotNodes := attrs("#fabric g.node", "data-node")
	gotPairs := attrs("#fabric path.pair", "data-prefill", "data-decode")
	gotRows := attrs("#pair-table tr.pair-row", "data-prefill", "data-decode")
	width, err := chromedp.Run(browser, chromedp.Evaluate[float64](`document.querySelector("#fabric").getBoundingClientRect().width`))
	if err != nil {
		t.Fatalf("measuring the picture: %v", err)
	}
	for _, set := range []struct {
		what      string
		got, want []string
	}{{"nodes in the picture", gotNodes, nodes}, {"pairs in the picture", gotPairs, pairs}, {"pairs in the table", gotRows, pairs}} {
		slices.Sort(set.got)
		want := slices.Sorted(slices.Values(set.want))
		if !slices.Equal(set.got, want) {
			t.Errorf("%s: %v, want %v", set.what, set.got, want)
		}
	}
	if width <= 0 {
		t.Errorf("the picture is %v wide in the browser", width)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
