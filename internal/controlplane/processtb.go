package controlplane

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"k8s.io/kubernetes/test/utils/ktesting"
)

// ProcessTB lets a binary (the demo, the benchmark) start the control plane,
// whose helpers expect a test's TB: cleanups run when Close is called, logs go
// to Log, and a fatal error ends the calling goroutine after recording it, as
// in a test. Run the work through Run to turn that into an error.
type ProcessTB struct {
	// Output receives Log and Logf output; nil discards it.
	Output io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	errs     []string
}

// Run calls fn on its own goroutine and returns the first error recorded by
// Error, Fatal or a panic.
func (p *ProcessTB) Run(fn func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				p.Errorf("panic: %v", r)
			}
		}()
		fn()
	}()
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed {
		if len(p.errs) == 0 {
			return fmt.Errorf("failed")
		}
		return fmt.Errorf("%s", p.errs[0])
	}
	return nil
}

// Close runs the cleanups, last registered first.
func (p *ProcessTB) Close() {
	p.mu.Lock()
	cleanups := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}

// Attr records a key and value for the run, as testing.T's does: it goes to
// Log.
func (p *ProcessTB) Attr(key, value string) { p.Logf("attr %s %s", key, value) }

// Chdir changes the process's working directory to dir and changes it back
// when Close runs, as testing.T's does.
func (p *ProcessTB) Chdir(dir string) {
	prev, err := os.Getwd()
	if err != nil {
		p.Fatalf("chdir %s: %v", dir, err)
	}
	if err := os.Chdir(dir); err != nil {
		p.Fatalf("chdir %s: %v", dir, err)
	}
	p.Cleanup(func() { _ = os.Chdir(prev) })
}

func (p *ProcessTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *ProcessTB) Error(args ...any) { p.record(fmt.Sprint(args...)) }

func (p *ProcessTB) Errorf(format string, args ...any) { p.record(fmt.Sprintf(format, args...)) }

func (p *ProcessTB) record(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = true
	p.errs = append(p.errs, msg)
}

func (p *ProcessTB) Fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = true
}

// FailNow ends the calling goroutine, as testing.T's does.
func (p *ProcessTB) FailNow() {
	p.Fail()
	runtime.Goexit()
}

func (p *ProcessTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *ProcessTB) Fatal(args ...any) {
	p.Error(args...)
	runtime.Goexit()
}

func (p *ProcessTB) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	runtime.Goexit()
}

func (p *ProcessTB) Helper() {}

func (p *ProcessTB) Log(args ...any) {
	if p.Output != nil {
		fmt.Fprintln(p.Output, args...)
	}
}

func (p *ProcessTB) Logf(format string, args ...any) {
	if p.Output != nil {
		fmt.Fprintf(p.Output, format+"\n", args...)
	}
}

func (p *ProcessTB) Name() string { return "tandem" }

func (p *ProcessTB) Setenv(key, value string) {
	prev, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		p.Fatalf("setting %s: %v", key, err)
	}
	p.Cleanup(func() {
		if had {
			_ = os.Setenv(key, prev)
		} else {
			_ = os.Unsetenv(key)
		}
	})
}

// Skip and its kin end the goroutine like FailNow: a binary has nothing to skip to.
func (p *ProcessTB) Skip(args ...any) { p.Fatal(append([]any{"skipped: "}, args...)...) }

func (p *ProcessTB) SkipNow() { p.Fatal("skipped") }

func (p *ProcessTB) Skipf(format string, args ...any) { p.Fatalf("skipped: "+format, args...) }

func (p *ProcessTB) Skipped() bool { return false }

// TempDir returns a new directory that Close removes.
func (p *ProcessTB) TempDir() string {
	dir, err := os.MkdirTemp("", "tandem-")
	if err != nil {
		p.Fatalf("creating a temporary directory: %v", err)
	}
	p.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

var _ ktesting.TB = &ProcessTB{}
