package gpu

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// ErrNVMLTimeout is returned by a Deadline whose call did not return in
// time, or while an earlier call is still hung.
var ErrNVMLTimeout = errors.New("NVML call did not return in time")

// Deadline runs every call to Lib under a time limit, so that a hung driver
// (an NVML call that never returns, as with a GPU stuck in recovery) makes
// discovery fail with a reason instead of blocking the agent forever. A call
// that overran keeps its goroutine; until it returns, further calls fail at
// once rather than pile up behind it, and Hung says which call it is.
type Deadline struct {
	Lib     Library
	Timeout time.Duration
	Clock   clock.PassiveClock

	mu        sync.Mutex
	hungCall  string
	hungSince time.Time
}

var _ Library = (*Deadline)(nil)

// Hung returns the call still running past its deadline and when it
// started, or ok false.
func (d *Deadline) Hung() (call string, since time.Time, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hungCall, d.hungSince, d.hungCall != ""
}

func run[T any](d *Deadline, call string, f func() (T, error)) (T, error) {
	var zero T
	d.mu.Lock()
	if d.hungCall != "" {
		hung, since := d.hungCall, d.hungSince
		d.mu.Unlock()
		return zero, fmt.Errorf("NVML %s not attempted: %s has not returned since %s: %w", call, hung, since.UTC().Format(time.RFC3339), ErrNVMLTimeout)
	}
	d.mu.Unlock()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	start := d.Clock.Now()
	go func() {
		v, err := f()
		done <- result{v, err}
		d.mu.Lock()
		if d.hungCall == call && d.hungSince.Equal(start) {
			d.hungCall, d.hungSince = "", time.Time{}
		}
		d.mu.Unlock()
	}()
	timer := time.NewTimer(d.Timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-timer.C:
		d.mu.Lock()
		// The call may have finished between the timer and the lock.
		select {
		case r := <-done:
			d.mu.Unlock()
			return r.v, r.err
		default:
		}
		d.hungCall, d.hungSince = call, start
		d.mu.Unlock()
		return zero, fmt.Errorf("NVML %s did not return within %v: %w", call, d.Timeout, ErrNVMLTimeout)
	}
}

func (d *Deadline) Init() error {
	_, err := run(d, "Init", func() (struct{}, error) { return struct{}{}, d.Lib.Init() })
	return err
}

func (d *Deadline) Shutdown() error {
	_, err := run(d, "Shutdown", func() (struct{}, error) { return struct{}{}, d.Lib.Shutdown() })
	return err
}

func (d *Deadline) DeviceCount() (int, error) {
	return run(d, "DeviceCount", d.Lib.DeviceCount)
}

func (d *Deadline) Device(index int) (DeviceInfo, error) {
	return run(d, fmt.Sprintf("Device(%d)", index), func() (DeviceInfo, error) { return d.Lib.Device(index) })
}

func (d *Deadline) NVLinkP2P(a, b int) (bool, error) {
	return run(d, fmt.Sprintf("NVLinkP2P(%d, %d)", a, b), func() (bool, error) { return d.Lib.NVLinkP2P(a, b) })
}
