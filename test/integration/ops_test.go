package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// scrape reads the scheduler's /metrics as its secure endpoint serves it:
// legacyregistry's handler, where kube-scheduler's own metrics live too.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	legacyregistry.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: status %d", rec.Code)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// metricValue is the counter, gauge or histogram count of the family's
// series with the given labels; 0 when absent.
func metricValue(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := families[name]
	if f == nil {
		return 0
	}
series:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func histogramSum(families map[string]*dto.MetricFamily, name string) float64 {
	if f := families[name]; f != nil && len(f.Metric) == 1 && f.Metric[0].Histogram != nil {
		return f.Metric[0].Histogram.GetSampleSum()
	}
	return 0
}

// Two leaves of HGX nodes, and two GPU nodes the scheduler cannot trust.
const opsCluster = `
nodes:
- {name: l1, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: l2, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l2}
- {name: old, shape: hgx-h100, zone: z1, spine: s1, leaf: l3, topology: stale}
- {name: bare, shape: hgx-h100, zone: z1, spine: s1, leaf: l3, topology: missing}
`

// The scheduler's /metrics counts each prefill→decode pair it placed once,
// by the path class of the nodes the pair's pods were bound to, with its
// modeled KV time; each P/D pod gets a Placed event naming its partner.
func TestMetricsAndPlacedEventsFollowThePairsPlaced(t *testing.T) {
	before := scrape(t)
	cp := startCluster(t, opsCluster)
	// 1P2D of TP=2 engines and 1P1D of TP=8 engines: three pairs, each
	// decode's partner the unit's one prefill.
	createPodGroup(t, cp, "near", 3, 0)
	near := createUnit(t, cp, "near", 1, 2, 2, withLabels(pdaffinity.LabelPodGroup, "near"))
	createPodGroup(t, cp, "far", 2, 0)
	far := createUnit(t, cp, "far", 1, 1, 8, withLabels(pdaffinity.LabelPodGroup, "far"))
	placed := placements(t, cp, append(append([]string{}, near...), far...))

	levels := topology.DefaultLevels()
	model := topology.DefaultCostModel()
	kvBytes := topology.Llama3_70B_BF16().KVBytes(4096)
	classOf := func(prefill, decode string) topology.PathClass {
		a, b := placed[prefill], placed[decode]
		return levels.Classify(levels.PathOf(a), levels.PathOf(b), topology.GPUDirectRDMAReady(a), topology.GPUDirectRDMAReady(b))
	}
	want := map[topology.PathClass]int{}
	var wantSeconds float64
	partner := map[string]string{}
	for _, unit := range [][]string{near, far} {
		prefill := unit[0]
		for _, decode := range unit[1:] {
			c := classOf(prefill, decode)
			want[c]++
			wantSeconds += model.TransferTime(kvBytes, c).Seconds()
			partner[decode] = prefill
		}
	}

	// PostBind runs after the binding is visible: wait for the count.
	var after map[string]*dto.MetricFamily
	const pairs = "tandem_scheduler_pairs_placed_total"
	const kv = "tandem_scheduler_pair_kv_transfer_seconds"
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		after = scrape(t)
		return metricValue(after, kv)-metricValue(before, kv) >= 3, nil
	}); err != nil {
		t.Fatalf("%s counted %v pairs, want 3", kv, metricValue(after, kv)-metricValue(before, kv))
	}
	for _, c := range []topology.PathClass{topology.LevelNVLinkDomain, topology.LevelLeaf, topology.LevelSpine, topology.LevelZone, topology.PathHostBounce, topology.PathNone} {
		got := metricValue(after, pairs, "path_class", string(c)) - metricValue(before, pairs, "path_class", string(c))
		if int(got) != want[c] {
			t.Errorf("%s{path_class=%q} rose by %v, want %d (placements %v)", pairs, c, got, want[c], placed)
		}
		if _, ok := seriesOf(after, pairs, string(c)); !ok {
			t.Errorf("%s has no series for path class %q", pairs, c)
		}
	}
	if got := histogramSum(after, kv) - histogramSum(before, kv); got < wantSeconds*0.999 || got > wantSeconds*1.001 {
		t.Errorf("%s sum rose by %gs, want %gs", kv, got, wantSeconds)
	}
	const plans = "tandem_scheduler_unit_plans_total"
	if got := metricValue(after, plans, "mode", "replica", "trigger", "first") - metricValue(before, plans, "mode", "replica", "trigger", "first"); got < 2 {
		t.Errorf("%s{mode=replica,trigger=first} rose by %v, want at least the 2 units", plans, got)
	}
	// The fake agents' reports do not show the placements: the ledger holds
	// every GPU the five pods took.
	if got := metricValue(after, "tandem_scheduler_ledger_gpus"); got != 2*3+8*2 {
		t.Errorf("tandem_scheduler_ledger_gpus = %v, want %d", got, 2*3+8*2)
	}
	for reason, n := range map[string]float64{"missing": 1, "stale": 1, "invalid": 0} {
		if got := metricValue(after, "tandem_scheduler_nodes_without_fresh_topology", "reason", reason); got != n {
			t.Errorf("tandem_scheduler_nodes_without_fresh_topology{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	// kube-scheduler's own metrics are served by the same registry.
	if metricValue(after, "scheduler_schedule_attempts_total", "result", "scheduled") == 0 {
		t.Errorf("scheduler_schedule_attempts_total{result=scheduled} missing from the registry tandem's metrics are in")
	}

	// One Placed event per pod. A pair is named, with its path class and
	// modeled time, by the event of whichever of its pods bound second.
	messages := map[string]string{}
	for name := range placed {
		if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
			events, err := listEvents(ctx, cp, name)
			if err != nil {
				return false, err
			}
			n := 0
			for _, e := range events {
				if e.Reason == pdaffinity.ReasonPlaced {
					messages[name] = e.Message
					n += max(1, int(e.Count))
				}
			}
			if n > 1 {
				return false, fmt.Errorf("pod %s has %d Placed events, want 1", name, n)
			}
			return n == 1, nil
		}); err != nil {
			t.Errorf("pod %s: no single Placed event (%v):%s", name, err, eventsFor(cp, name))
			continue
		}
		if !strings.Contains(messages[name], "on node "+placed[name][v1.LabelHostname]+";") {
			t.Errorf("pod %s Placed event %q does not name its node", name, messages[name])
		}
	}
	for decode, prefill := range partner {
		c := classOf(prefill, decode)
		byDecode := fmt.Sprintf("paired with prefill %s on node %s: path %s, modeled KV transfer ", prefill, placed[prefill][v1.LabelHostname], c)
		byPrefill := fmt.Sprintf("paired with decode %s on node %s: path %s, modeled KV transfer ", decode, placed[decode][v1.LabelHostname], c)
		inDecode, inPrefill := strings.Contains(messages[decode], byDecode), strings.Contains(messages[prefill], byPrefill)
		if inDecode == inPrefill {
			t.Errorf("pair %s→%s named by the decode's event %v and the prefill's %v, want exactly one: %q, %q",
				prefill, decode, inDecode, inPrefill, messages[decode], messages[prefill])
		}
	}
}

func seriesOf(families map[string]*dto.MetricFamily, name, class string) (*dto.Metric, bool) {
	f := families[name]
	if f == nil {
		return nil, false
	}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if l.GetName() == "path_class" && l.GetValue() == class {
				return m, true
			}
		}
	}
	return nil, false
}
