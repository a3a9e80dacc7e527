// Package metrics holds the tandem scheduler's own metrics. They are
// registered in component-base's legacyregistry, as kube-scheduler's are, so
// they appear on the scheduler's secure /metrics endpoint beside them.
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	k8smetrics "k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// Subsystem prefixes every metric name: tandem_scheduler_.
const (
	namespace = "tandem"
	subsystem = "scheduler"
)

// Plan modes and triggers, the label values of UnitPlans.
const (
	ModeReplica = "replica"
	ModePool    = "pool"

	TriggerFirst  = "first"
	TriggerReplan = "replan"
)

// Reasons a node is counted by the nodes-without-fresh-topology gauge.
const (
	NodeTopologyMissing = "missing"
	NodeTopologyStale   = "stale"
	NodeTopologyInvalid = "invalid"
)

var (
	// PairsPlaced counts prefill→decode pairs by path class, once per pair
	// when its second pod binds.
	PairsPlaced = k8smetrics.NewCounterVec(&k8smetrics.CounterOpts{
		Namespace:      namespace,
		Subsystem:      subsystem,
		Name:           "pairs_placed_total",
		Help:           "Prefill-decode pairs bound by this scheduler, by the path class their KV cache takes, counted when the pair's second pod binds.",
		StabilityLevel: k8smetrics.ALPHA,
	}, []string{"path_class"})

	// PairKVTransfer is the modeled KV-transfer time of each counted pair.
	PairKVTransfer = k8smetrics.NewHistogram(&k8smetrics.HistogramOpts{
		Namespace: namespace,
		Subsystem: subsystem,
		Name:      "pair_kv_transfer_seconds",
		Help: "Modeled time to move one request's KV cache (Llama-3-70B BF16, 4096-token prompt) from prefill to decode, " +
			"per pair counted by pairs_placed_total.",
		// 0.5 ms (NVLink) to about 4 s (across zones).
		Buckets:        k8smetrics.ExponentialBuckets(0.0005, 2, 14),
		StabilityLevel: k8smetrics.ALPHA,
	})

	// UnitPlans counts the plans PDAffinity made for replica units and pool
	// chunks: a unit's first plan, or a replan after a planned placement
	// failed.
	UnitPlans = k8smetrics.NewCounterVec(&k8smetrics.CounterOpts{
		Namespace:      namespace,
		Subsystem:      subsystem,
		Name:           "unit_plans_total",
		Help:           "Plans made for replica units (mode=replica) and pool chunks (mode=pool); trigger=first for a unit's first plan, replan for a unit planned again (a planned placement failed, or a pod its plan did not place).",
		StabilityLevel: k8smetrics.ALPHA,
	}, []string{"mode", "trigger"})

	nodesDesc = k8smetrics.NewDesc(
		k8smetrics.BuildFQName(namespace, subsystem, "nodes_without_fresh_topology"),
		"GPU nodes whose NodeTopology the scheduler cannot use: missing, stale (heartbeat older than the freshness limit) or invalid.",
		[]string{"reason"}, nil, k8smetrics.ALPHA, "")
	ledgerDesc = k8smetrics.NewDesc(
		k8smetrics.BuildFQName(namespace, subsystem, "ledger_gpus"),
		"GPUs the scheduler placed pods on that the nodes' NodeTopology reports do not show yet (the placement model's ledger).",
		nil, nil, k8smetrics.ALPHA, "")
)

// ModelState is what the gauges read at scrape time.
type ModelState struct {
	// Nodes counts GPU nodes by reason (NodeTopologyMissing, ...).
	Nodes map[string]int
	// LedgerGPUs are the GPUs held by the placement model's ledger.
	LedgerGPUs int
}

var (
	registerOnce sync.Once
	modelState   atomic.Pointer[func() ModelState]
)

// Register registers the metrics in legacyregistry; later calls do nothing.
func Register() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(PairsPlaced, PairKVTransfer, UnitPlans)
		legacyregistry.CustomMustRegister(&modelCollector{})
	})
}

// SetModelState installs the function the gauges read at scrape time. A
// process runs one scheduler, so the last one installed is the one read.
func SetModelState(f func() ModelState) { modelState.Store(&f) }

// InitPathClasses makes every class's counter appear at zero, so that rates
// over a class no pair took yet are 0 rather than absent.
// The classes are levels' names, host-bounce and none.
func InitPathClasses(levels topology.Levels) {
	for _, l := range levels {
		PairsPlaced.WithLabelValues(l.Name)
	}
	PairsPlaced.WithLabelValues(string(topology.PathHostBounce))
	PairsPlaced.WithLabelValues(string(topology.PathNone))
}

// ObservePair records one pair placed along class c with the modeled
// transfer time t.
func ObservePair(c topology.PathClass, t time.Duration) {
	PairsPlaced.WithLabelValues(string(c)).Inc()
	PairKVTransfer.Observe(t.Seconds())
}

// Planned records a plan made.
func Planned(mode, trigger string) { UnitPlans.WithLabelValues(mode, trigger).Inc() }

type modelCollector struct {
	k8smetrics.BaseStableCollector
}

func (c *modelCollector) DescribeWithStability(ch chan<- *k8smetrics.Desc) {
	ch <- nodesDesc
	ch <- ledgerDesc
}

func (c *modelCollector) CollectWithStability(ch chan<- k8smetrics.Metric) {
	f := modelState.Load()
	if f == nil {
		return
	}
	s := (*f)()
	for _, reason := range []string{NodeTopologyMissing, NodeTopologyStale, NodeTopologyInvalid} {
		ch <- k8smetrics.NewLazyConstMetric(nodesDesc, k8smetrics.GaugeValue, float64(s.Nodes[reason]), reason)
	}
	ch <- k8smetrics.NewLazyConstMetric(ledgerDesc, k8smetrics.GaugeValue, float64(s.LedgerGPUs))
}
