// Package runner runs the node's diagnostic commands (lldpcli, smpquery,
// modprobe) behind an interface, so that parsers are tested on golden output.
package runner

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Runner runs a command and returns its standard output.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Exec runs commands on the host.
type Exec struct {
	// Timeout bounds each command; zero means 30 seconds.
	Timeout time.Duration
}

var _ Runner = Exec{}

// Run runs name with args and returns its output. A failure names the
// command line and carries what it wrote to standard error.
func (e Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	timeout := e.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 512 {
			msg = msg[:512]
		}
		if msg != "" {
			return stdout.Bytes(), fmt.Errorf("running %s: %w: %s", CommandLine(name, args...), err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("running %s: %w", CommandLine(name, args...), err)
	}
	return stdout.Bytes(), nil
}

// CommandLine joins a command and its arguments with spaces, the key Fake
// looks commands up by.
func CommandLine(name string, args ...string) string {
	return strings.Join(append([]string{name}, args...), " ")
}

// FakeResult is what Fake returns for one command line.
type FakeResult struct {
	Output []byte
	Err    error
}

// Fake returns canned output per command line and records every call.
type Fake struct {
	mu      sync.Mutex
	results map[string]FakeResult
	calls   []string
}

var _ Runner = (*Fake)(nil)

// NewFake returns a Fake with no commands; every command fails until Set.
func NewFake() *Fake { return &Fake{results: map[string]FakeResult{}} }

// Set makes the command line give output and err.
func (f *Fake) Set(commandLine string, output []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[commandLine] = FakeResult{Output: output, Err: err}
}

// Run returns what Set gave for the command line, or an error that names it.
func (f *Fake) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	line := CommandLine(name, args...)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, line)
	r, ok := f.results[line]
	if !ok {
		return nil, fmt.Errorf("running %s: %w", line, exec.ErrNotFound)
	}
	return r.Output, r.Err
}

// Calls returns the command lines run so far, in order.
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}
