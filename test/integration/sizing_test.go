package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/bench/run"
)

// buildScheduler builds the scheduler binary, stamped as make builds it,
// into dir.
func buildScheduler(t *testing.T, dir string) string {
	t.Helper()
	mk := exec.Command("make", "-s", "--no-print-directory", "ldflags")
	mk.Dir = controlplane.RepoRoot()
	ldflags, err := mk.Output()
	if err != nil {
		t.Fatalf("make ldflags: %v", err)
	}
	bin := filepath.Join(dir, "scheduler")
	if out, err := goCmd(t, nil, "build", "-ldflags", strings.TrimSpace(string(ldflags)), "-o", bin, "./cmd/scheduler"); err != nil {
		t.Fatalf("go build ./cmd/scheduler: %v\n%s", err, out)
	}
	return bin
}

// sizingOptions are a benchmark run of the tandem profile on a generated
// cluster of n nodes with the default workload.
func sizingOptions(t *testing.T, n int, binary string, log io.Writer) run.Options {
	t.Helper()
	desc, err := bench.GenerateCluster(n)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "docs", "examples", "workload.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wl, err := bench.ParseWorkload(data)
	if err != nil {
		t.Fatal(err)
	}
	gpus := 0
	for _, node := range bench.NodesOf(desc.Build(time.Now())) {
		gpus += node.GPUs
	}
	return run.Options{
		Cluster: desc, Workload: wl.Scaled(gpus), Profile: run.Tandem, SchedulerBinary: binary,
		Settle: 10 * time.Second, Timeout: 2 * time.Minute, Log: log,
	}
}

// The benchmark's sizing path: the scheduler binary runs as a child process
// against the in-process control plane, places the workload, and its own
// memory is reported from /proc; the child is gone once the run returns.
func TestSizingMeasuresTheSchedulerProcess(t *testing.T) {
	bin := buildScheduler(t, t.TempDir())
	var log syncBuffer
	res, err := run.Run(context.Background(), sizingOptions(t, 20, bin, &log))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, tail(log.String(), 4000))
	}
	if res.Scheduled == 0 || res.Scheduled != len(res.Pods) {
		t.Errorf("%d of %d pods bound by the scheduler process, want all\n%s", res.Scheduled, len(res.Pods), tail(log.String(), 4000))
	}
	m := res.Memory
	if m == nil || !res.SchedulerProcess {
		t.Fatalf("no memory of the scheduler process reported: %+v", res)
	}
	if m.RSS <= 10<<20 || m.PeakRSS < m.RSS {
		t.Errorf("scheduler RSS %d bytes, peak %d: want more than 10 MiB, and a peak no smaller", m.RSS, m.PeakRSS)
	}
	if m.HeapInuse == 0 || m.HeapInuse > m.PeakRSS {
		t.Errorf("Go heap in use %d bytes (%s), RSS peak %d: want a heap that fits in the peak", m.HeapInuse, m.HeapNotRead, m.PeakRSS)
	}
	if got := res.Attempts["scheduled"].Count; got < uint64(res.Scheduled) {
		t.Errorf("%d scheduled attempts read from the process's /metrics, want at least the %d pods bound", got, res.Scheduled)
	}
	if res.SchedulerCPUPerPod <= 0 || res.SchedulerCPUShare <= 0 || res.SchedulerCPUShare > 1 {
		t.Errorf("scheduler CPU per pod %s, share %.2f of the control plane's: want the child's own CPU time", res.SchedulerCPUPerPod, res.SchedulerCPUShare)
	}
	if res.SchedulerPID <= 0 {
		t.Fatalf("scheduler pid %d", res.SchedulerPID)
	}
	// Reaped: signal 0 to the pid finds no process.
	if err := syscall.Kill(res.SchedulerPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("scheduler process %d still exists after the run (kill -0: %v)", res.SchedulerPID, err)
	}
}

// A scheduler binary that exits at start-up fails the run with an error
// that says so, not a hang until the timeout.
func TestSizingReportsASchedulerThatExitsAtStartUp(t *testing.T) {
	var log syncBuffer
	start := time.Now()
	_, err := run.Run(context.Background(), sizingOptions(t, 4, "/bin/false", &log))
	if err == nil || !strings.Contains(err.Error(), "exited at start-up") || !strings.Contains(err.Error(), "/bin/false") {
		t.Fatalf("run with /bin/false as the scheduler: %v, want an error saying it exited at start-up", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("the run took %s to notice", d)
	}
}

// syncBuffer is a bytes.Buffer for several writers: the control plane's
// log and the child's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
