package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/kubernetes/test/utils/ktesting"
)

// SchedulerProcess is the scheduler binary running as a child process
// against this control plane, so that its memory and CPU are its own.
type SchedulerProcess struct {
	// Pid is the child's process id.
	Pid int
	// MetricsURL is /metrics on the scheduler's secure port. The port's
	// certificate is self-signed; the path needs no credentials.
	MetricsURL string

	binary  string
	healthz string
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error
	once    sync.Once
}

// StartSchedulerProcess starts the scheduler binary from the configuration
// file at configPath with the changes StartScheduler makes (this control
// plane's kubeconfig, leader election off, o's client rate limit), its
// secure port on a free loopback port with /metrics open to anonymous
// reads, and its output to log. It returns once the child has started;
// WaitHealthy waits until it serves. The child is stopped when tb's cleanup
// runs, or by Stop, and Linux kills it if this process dies first.
func (cp *ControlPlane) StartSchedulerProcess(tb ktesting.TB, binary, configPath string, o SchedulerOptions, log io.Writer) (*SchedulerProcess, error) {
	tb.Helper()
	path, err := cp.localSchedulerConfig(configPath, tb.TempDir(), o)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary,
		"--config="+path,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		// The secure port's default open paths, and /metrics for the
		// sampler: nothing else is read from it.
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	p := &SchedulerProcess{
		Pid:        cmd.Process.Pid,
		MetricsURL: fmt.Sprintf("https://127.0.0.1:%d/metrics", port),
		binary:     binary,
		healthz:    fmt.Sprintf("https://127.0.0.1:%d/healthz", port),
		cmd:        cmd,
		exited:     make(chan struct{}),
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() { _ = p.Stop() })
	return p, nil
}

// WaitHealthy waits until the scheduler answers /healthz, and fails if it
// exits first or timeout passes.
func (p *SchedulerProcess) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("scheduler %s exited at start-up: %v (its output is in the control plane's log)", p.binary, p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		_, err := p.get(ctx, p.healthz)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scheduler %s did not answer %s within %s: %w", p.binary, p.healthz, timeout, err)
		}
	}
}

// Metrics reads the scheduler's /metrics.
func (p *SchedulerProcess) Metrics(ctx context.Context) ([]byte, error) {
	return p.get(ctx, p.MetricsURL)
}

func (p *SchedulerProcess) get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{
		// The scheduler's serving certificate is self-signed, made at start-up.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback, self-signed
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// Exited is closed once the child has exited and been reaped.
func (p *SchedulerProcess) Exited() <-chan struct{} { return p.exited }

// Stop asks the scheduler to stop (SIGTERM), kills it if it has not exited
// within ten seconds, and waits until it is reaped. It returns an error only
// when the child could not be stopped; calling it again is harmless.
func (p *SchedulerProcess) Stop() error {
	var err error
	p.once.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		if serr := p.cmd.Process.Signal(syscall.SIGTERM); serr != nil && !errors.Is(serr, os.ErrProcessDone) {
			err = fmt.Errorf("stopping scheduler process %d: %w", p.Pid, serr)
		}
		select {
		case <-p.exited:
			return
		case <-time.After(10 * time.Second):
		}
		if kerr := p.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			err = fmt.Errorf("killing scheduler process %d: %w", p.Pid, kerr)
			return
		}
		<-p.exited
	})
	return err
}

// freePort is a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
