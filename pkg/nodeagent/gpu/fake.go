package gpu

import (
	"fmt"
	"slices"
	"sync"
)

// Fake is a pure-Go Library holding a fixed set of GPUs. It is safe for
// concurrent use, so a test may change it while an agent reads it.
type Fake struct {
	mu      sync.Mutex
	initErr error
	devices []DeviceInfo
	errs    map[int]error
	noP2P   map[[2]int]bool
	inits   int
	// block, when set, makes DeviceCount wait until it is closed.
	block chan struct{}
}

var _ Library = (*Fake)(nil)

// NewFake returns a Fake with the given devices, indexed by position.
func NewFake(devices ...DeviceInfo) *Fake {
	f := &Fake{errs: map[int]error{}, noP2P: map[[2]int]bool{}}
	for i, d := range devices {
		d.Index = i
		d.NVLinks = slices.Clone(d.NVLinks)
		f.devices = append(f.devices, d)
	}
	return f
}

// SetInitError makes Init fail with err (nil restores it).
func (f *Fake) SetInitError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initErr = err
}

// SetDeviceError makes Device(index) fail with err, such as ErrGPULost.
func (f *Fake) SetDeviceError(index int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.errs, index)
		return
	}
	f.errs[index] = err
}

// DisableP2P makes NVLinkP2P report false between a and b, both ways.
func (f *Fake) DisableP2P(a, b int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noP2P[[2]int{a, b}] = true
	f.noP2P[[2]int{b, a}] = true
}

// Inits counts successful Init calls.
func (f *Fake) Inits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inits
}

func (f *Fake) Init() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.initErr != nil {
		return f.initErr
	}
	f.inits++
	return nil
}

func (f *Fake) Shutdown() error { return nil }

// Hang makes DeviceCount block, as a hung driver does, until the returned
// function is called.
func (f *Fake) Hang() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	block := make(chan struct{})
	f.block = block
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.block = nil
			f.mu.Unlock()
			close(block)
		})
	}
}

func (f *Fake) DeviceCount() (int, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.devices), nil
}

func (f *Fake) Device(index int) (DeviceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index < 0 || index >= len(f.devices) {
		return DeviceInfo{}, fmt.Errorf("GPU %d: no such device", index)
	}
	if err := f.errs[index]; err != nil {
		return DeviceInfo{}, fmt.Errorf("GPU %d: %w", index, err)
	}
	d := f.devices[index]
	d.NVLinks = slices.Clone(d.NVLinks)
	if d.Fabric != nil {
		fab := *d.Fabric
		d.Fabric = &fab
	}
	d.Warnings = slices.Clone(d.Warnings)
	return d, nil
}

func (f *Fake) NVLinkP2P(a, b int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a < 0 || a >= len(f.devices) || b < 0 || b >= len(f.devices) {
		return false, fmt.Errorf("NVLink P2P between GPU %d and %d: no such device", a, b)
	}
	if err := f.errs[a]; err != nil {
		return false, fmt.Errorf("GPU %d: %w", a, err)
	}
	if err := f.errs[b]; err != nil {
		return false, fmt.Errorf("GPU %d: %w", b, err)
	}
	return !f.noP2P[[2]int{a, b}], nil
}
