package nodeagent

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/utils/clock"
)

// Health is what the agent's /healthz, /readyz and /metrics endpoints
// report: the last successful sync and heartbeat, discovery problems by
// source, the GPUDirect checks, and the API writes made. Its registry is its
// own, so tests and the agent do not share global state.
type Health struct {
	Clock clock.PassiveClock
	// MaxSyncAge is how old the last successful sync may be before
	// /healthz fails; it also covers start-up, before the first one.
	MaxSyncAge time.Duration
	// MaxHeartbeatAge is how old the last write confirming the
	// NodeTopology (a status update or a heartbeat) may be.
	MaxHeartbeatAge time.Duration
	// Hung, when set, names an NVML call still running past its deadline.
	Hung func() (call string, since time.Time, ok bool)

	registry        *prometheus.Registry
	discoveryErrors *prometheus.CounterVec
	checks          *prometheus.GaugeVec
	ready           prometheus.Gauge
	lastSync        prometheus.Gauge
	lastHeartbeat   prometheus.Gauge
	syncErrors      prometheus.Counter
	writes          *prometheus.CounterVec
	syncDuration    prometheus.Histogram

	mu                        sync.Mutex
	started                   time.Time
	lastSyncOK, lastConfirmed time.Time
	lastSyncErr               error
}

// NewHealth returns a Health with its metrics registered.
func NewHealth(clk clock.PassiveClock, maxSyncAge, maxHeartbeatAge time.Duration) *Health {
	h := &Health{
		Clock: clk, MaxSyncAge: maxSyncAge, MaxHeartbeatAge: maxHeartbeatAge, started: clk.Now(),
		registry: prometheus.NewRegistry(),
		discoveryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_agent_discovery_errors_total", Help: "Discovery passes in which a source reported a problem, by source.",
		}, []string{"source"}),
		checks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_agent_gpudirect_check", Help: "1 for each GPUDirect RDMA check's current result.",
		}, []string{"check", "result"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_gpudirect_ready", Help: "1 when the node is GPUDirect RDMA ready.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_last_successful_sync_timestamp_seconds", Help: "When the last sync (discovery and publish) succeeded.",
		}),
		lastHeartbeat: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_agent_last_heartbeat_timestamp_seconds", Help: "When the NodeTopology was last confirmed (status written or heartbeat).",
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_agent_sync_errors_total", Help: "Syncs that failed to publish.",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_agent_api_writes_total", Help: "Writes to the API server, by what was written.",
		}, []string{"kind"}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tandem_agent_sync_duration_seconds", Help: "How long a sync took, discovery and publish.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
	}
	h.registry.MustRegister(h.discoveryErrors, h.checks, h.ready, h.lastSync, h.lastHeartbeat, h.syncErrors, h.writes, h.syncDuration)
	return h
}

// Write kinds counted in tandem_agent_api_writes_total.
const (
	WriteTopology  = "nodetopology"
	WriteLabels    = "labels"
	WriteCondition = "node-condition"
	WriteHeartbeat = "heartbeat"
	WriteEvent     = "event"
)

// ObserveSync records one sync: what discovery found (d may be nil when the
// Node could not be read), what it wrote, and whether it succeeded.
func (h *Health) ObserveSync(d *Discovery, w Writes, err error, took time.Duration) {
	now := h.Clock.Now()
	h.syncDuration.Observe(took.Seconds())
	h.countWrites(w)
	if d != nil {
		for source, e := range map[string]error{"nvml": d.GPUErr, "rdma": d.NICErr, "pci": d.PCIErr, "leaf": d.LeafErr, "pod-resources": d.AllocErr, "resource-slices": d.SliceErr, "configure": d.ConfigureErr} {
			if e != nil {
				h.discoveryErrors.WithLabelValues(source).Inc()
			}
		}
		h.checks.Reset()
		for _, c := range d.GPUDirect.Checks {
			h.checks.WithLabelValues(c.Name, string(c.Result)).Set(1)
		}
		if d.GPUDirect.Ready {
			h.ready.Set(1)
		} else {
			h.ready.Set(0)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSyncErr = err
	if err != nil {
		h.syncErrors.Inc()
		return
	}
	h.lastSyncOK = now
	h.lastSync.Set(float64(now.Unix()))
	if w.Topology {
		// A status write sets the heartbeat too.
		h.lastConfirmed = now
		h.lastHeartbeat.Set(float64(now.Unix()))
	}
}

// ObserveHeartbeat records a heartbeat attempt.
func (h *Health) ObserveHeartbeat(wrote bool, err error) {
	if !wrote || err != nil {
		return
	}
	h.writes.WithLabelValues(WriteHeartbeat).Inc()
	now := h.Clock.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastConfirmed = now
	h.lastHeartbeat.Set(float64(now.Unix()))
}

// ObserveEvent counts an event the agent emitted.
func (h *Health) ObserveEvent() { h.writes.WithLabelValues(WriteEvent).Inc() }

func (h *Health) countWrites(w Writes) {
	for kind, wrote := range map[string]bool{WriteTopology: w.Topology, WriteLabels: w.Labels, WriteCondition: w.Condition} {
		if wrote {
			h.writes.WithLabelValues(kind).Inc()
		}
	}
}

// Healthy is nil while the agent works: its last successful sync and its
// last confirmation of the NodeTopology are recent enough, and no NVML call
// is hung. Before the first sync, the agent has MaxSyncAge from its start.
func (h *Health) Healthy() error {
	now := h.Clock.Now()
	var errs []error
	if h.Hung != nil {
		if call, since, ok := h.Hung(); ok {
			errs = append(errs, fmt.Errorf("NVML call %s has not returned for %v", call, now.Sub(since).Round(time.Second)))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	syncRef, confirmRef := h.lastSyncOK, h.lastConfirmed
	if syncRef.IsZero() {
		syncRef = h.started
	}
	if confirmRef.IsZero() {
		confirmRef = h.started
	}
	if age := now.Sub(syncRef); age > h.MaxSyncAge {
		msg := fmt.Sprintf("no successful sync for %v (limit %v)", age.Round(time.Second), h.MaxSyncAge)
		if h.lastSyncErr != nil {
			msg += ": " + h.lastSyncErr.Error()
		}
		errs = append(errs, errors.New(msg))
	}
	if age := now.Sub(confirmRef); age > h.MaxHeartbeatAge {
		errs = append(errs, fmt.Errorf("NodeTopology not confirmed for %v (limit %v)", age.Round(time.Second), h.MaxHeartbeatAge))
	}
	return errors.Join(errs...)
}

// Ready is nil once a sync has succeeded.
func (h *Health) Ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lastSyncOK.IsZero() {
		if h.lastSyncErr != nil {
			return fmt.Errorf("no successful sync yet: %w", h.lastSyncErr)
		}
		return errors.New("no successful sync yet")
	}
	return nil
}

// Handler serves /healthz (liveness), /readyz and /metrics.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	probe := func(check func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err := check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, err)
				return
			}
			fmt.Fprintln(w, "ok")
		}
	}
	mux.Handle("/healthz", probe(h.Healthy))
	mux.Handle("/readyz", probe(h.Ready))
	mux.Handle("/metrics", promhttp.HandlerFor(h.registry, promhttp.HandlerOpts{}))
	return mux
}
