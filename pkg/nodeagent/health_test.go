package nodeagent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHealthEndpoints(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	h := NewHealth(clk, 2*time.Minute, 3*time.Minute)
	hung := ""
	h.Hung = func() (string, time.Time, bool) { return hung, clk.Now().Add(-45 * time.Second), hung != "" }
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()

	// Starting: alive, not ready.
	if code, _ := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("healthz at start = %d", code)
	}
	if code, body := get(t, srv, "/readyz"); code != 503 || !strings.Contains(body, "no successful sync yet") {
		t.Errorf("readyz at start = %d %q", code, body)
	}
	m := build(t, fixtures.HGXH100())
	d := discoverer(m, leaf.Labels{}).Discover(context.Background(), hgxNode(m))
	h.ObserveSync(d, Writes{Topology: true, Labels: true, Condition: true}, nil, 30*time.Millisecond)
	if code, _ := get(t, srv, "/readyz"); code != 200 {
		t.Errorf("readyz after a sync = %d", code)
	}
	_, metrics := get(t, srv, "/metrics")
	for _, want := range []string{
		`tandem_agent_api_writes_total{kind="nodetopology"} 1`,
		`tandem_agent_api_writes_total{kind="labels"} 1`,
		`tandem_agent_gpudirect_check{check="acs",result="Pass"} 1`,
		`tandem_agent_gpudirect_ready 1`,
		`tandem_agent_last_successful_sync_timestamp_seconds 1.7356896e+09`,
		`tandem_agent_discovery_errors_total{source="pod-resources"}`,
	} {
		if want == `tandem_agent_discovery_errors_total{source="pod-resources"}` {
			if strings.Contains(metrics, want) {
				t.Errorf("metrics count an error for a source that had none")
			}
			continue
		}
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Syncs keep failing: unhealthy once the last success is too old, with
	// the last error.
	clk.Step(time.Minute)
	h.ObserveHeartbeat(true, nil)
	h.ObserveSync(nil, Writes{}, errors.New("getting node x: etcd is sad"), time.Millisecond)
	if code, _ := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("healthz one minute after the last success = %d", code)
	}
	clk.Step(90 * time.Second)
	if code, body := get(t, srv, "/healthz"); code != 503 || !strings.Contains(body, "no successful sync for 2m30s") || !strings.Contains(body, "etcd is sad") {
		t.Errorf("healthz after 2m30s of failures = %d %q", code, body)
	}
	h.ObserveSync(d, Writes{}, nil, time.Millisecond)
	if code, _ := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("healthz after recovering = %d", code)
	}
	// No heartbeat for too long.
	clk.Step(3*time.Minute + time.Second)
	h.ObserveSync(d, Writes{}, nil, time.Millisecond)
	if code, body := get(t, srv, "/healthz"); code != 503 || !strings.Contains(body, "NodeTopology not confirmed") {
		t.Errorf("healthz without heartbeats = %d %q", code, body)
	}
	h.ObserveHeartbeat(true, nil)
	// A hung NVML call shows.
	hung = "DeviceCount"
	if code, body := get(t, srv, "/healthz"); code != 503 || !strings.Contains(body, "NVML call DeviceCount has not returned for 45s") {
		t.Errorf("healthz with NVML hung = %d %q", code, body)
	}
}

// Condition transitions become events on the Node: a NIC going down and
// coming back, nothing in steady state.
func TestAgentEventsOnConditionTransitions(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	h := newHarness(t, 10*time.Second, time.Minute, func(h *harness) { h.recorder = rec })
	if err := h.waitSync(); err != nil {
		t.Fatal(err)
	}
	events := func() []string {
		var out []string
		for {
			select {
			case e := <-rec.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}
	// First publish: every condition appears True (the harness node has a
	// leaf label), which is not news.
	if got := events(); len(got) != 0 {
		t.Errorf("first sync events %q, want none (all conditions True)", got)
	}
	if err := h.step(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := events(); len(got) != 0 {
		t.Errorf("steady-state events %q", got)
	}
	if err := h.m.SetPortState("mlx5_5", "1: DOWN", "3: Disabled"); err != nil {
		t.Fatal(err)
	}
	if err := h.step(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := events()
	if len(got) != 1 || !strings.HasPrefix(got[0], "Warning NICPortNotActive GPUDirectRDMAReady is False (was True): nic-port Fail") {
		t.Errorf("NIC down events %q", got)
	}
	if err := h.m.SetPortState("mlx5_5", "4: ACTIVE", "5: LinkUp"); err != nil {
		t.Fatal(err)
	}
	if err := h.step(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := events(); len(got) != 1 || !strings.HasPrefix(got[0], "Normal AllChecksPassed GPUDirectRDMAReady is True (was False)") {
		t.Errorf("NIC up events %q", got)
	}
}
