package nvmlgpu

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
)

// This machine has no NVIDIA driver: loading NVML must fail cleanly, naming
// the library, and never crash.
func TestInitWithoutDriver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	lib := New(path)
	err := lib.Init()
	if !errors.Is(err, gpu.ErrLibraryNotFound) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Init() = %v, want ErrLibraryNotFound naming %s", err, path)
	}
	// The symbol guard must hold with the library unloaded.
	if lib.hasSymbol(symFabricInfoV) {
		t.Error("hasSymbol reports a symbol of a library that is not loaded")
	}
	if _, err := gpu.Discover(t.Context(), lib); !errors.Is(err, gpu.ErrLibraryNotFound) {
		t.Errorf("Discover() = %v, want ErrLibraryNotFound", err)
	}
}

func TestAsError(t *testing.T) {
	if err := asError(nvml.ERROR_GPU_IS_LOST); !errors.Is(err, gpu.ErrGPULost) {
		t.Errorf("GPU_IS_LOST -> %v", err)
	}
	if err := asError(nvml.ERROR_LIBRARY_NOT_FOUND); !errors.Is(err, gpu.ErrLibraryNotFound) {
		t.Errorf("LIBRARY_NOT_FOUND -> %v", err)
	}
	if err := asError(nvml.ERROR_UNKNOWN); err == nil || errors.Is(err, gpu.ErrGPULost) || !strings.Contains(err.Error(), "999") {
		t.Errorf("UNKNOWN -> %v", err)
	}
	if asError(nvml.SUCCESS) != nil {
		t.Error("SUCCESS is an error")
	}
}

func TestFabricFrom(t *testing.T) {
	uuid := [16]uint8{0x9f, 0x6c, 0x4e, 0x2a, 0x1b, 0x3d, 0x4c, 0x5e, 0x8f, 0x70, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6}
	f := fabricFrom(uuid, uint32(nvml.SUCCESS), 32766, nvml.GPU_FABRIC_STATE_COMPLETED)
	if f == nil || f.ClusterUUID != "9f6c4e2a-1b3d-4c5e-8f70-a1b2c3d4e5f6" || f.CliqueID != 32766 || f.State != gpu.FabricCompleted || f.Status != "Success" {
		t.Errorf("fabric = %+v", f)
	}
	if f := fabricFrom([16]uint8{}, 0, 0, nvml.GPU_FABRIC_STATE_NOT_SUPPORTED); f != nil {
		t.Errorf("not-supported fabric = %+v, want nil", f)
	}
	if f := fabricFrom([16]uint8{}, uint32(nvml.ERROR_NOT_READY), 0, nvml.GPU_FABRIC_STATE_IN_PROGRESS); f == nil || f.ClusterUUID != "" || f.State != gpu.FabricInProgress || f.Status == "Success" {
		t.Errorf("in-progress fabric = %+v", f)
	}
}

func TestCString(t *testing.T) {
	b := make([]int8, 32)
	for i, c := range "00000000:1A:00.0" {
		b[i] = int8(c)
	}
	if got := cString(b); got != "00000000:1A:00.0" {
		t.Errorf("cString = %q", got)
	}
}
