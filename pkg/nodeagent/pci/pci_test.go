package pci_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
)

func TestLevel(t *testing.T) {
	d := func(host string, numa int, bridges ...string) pci.Device {
		return pci.Device{HostBridge: host, NUMANode: numa, Bridges: bridges}
	}
	for _, tc := range []struct {
		name string
		a, b pci.Device
		want v1alpha1.PCIeLevel
	}{
		{"same switch", d("pci0000:10", 0, "rp", "up", "down0"), d("pci0000:10", 0, "rp", "up", "down1"), "PIX"},
		{"same downstream port", d("pci0000:10", 0, "rp", "up", "down0"), d("pci0000:10", 0, "rp", "up", "down0"), "PIX"},
		{"cascaded switches", d("pci0000:10", 0, "rp", "up", "down0", "up2", "down2"), d("pci0000:10", 0, "rp", "up", "down1"), "PXB"},
		{"root ports of one host bridge", d("pci0000:10", 0, "rp1", "up"), d("pci0000:10", 0, "rp2"), "PHB"},
		{"host bridges of one socket", d("pci0000:10", 0, "rp1"), d("pci0000:20", 0, "rp2"), "NODE"},
		{"across sockets", d("pci0000:10", 0, "rp1"), d("pci0000:80", 1, "rp2"), "SYS"},
		{"NUMA unknown on one side", d("pci0000:10", -1, "rp1"), d("pci0000:80", 1, "rp2"), "SYS"},
	} {
		if got := pci.Level(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Level = %s, want %s", tc.name, got, tc.want)
		}
		if got := pci.Level(tc.b, tc.a); got != tc.want {
			t.Errorf("%s (reversed): Level = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func hgx(t *testing.T) *fixtures.Machine {
	m, err := fixtures.Build(t.TempDir(), fixtures.HGXH100())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDeviceFromSysfs(t *testing.T) {
	m := hgx(t)
	sys := pci.SysFS{Root: m.SysRoot}
	gpu, err := sys.Device("0000:13:00.0")
	if err != nil {
		t.Fatal(err)
	}
	if gpu.HostBridge != "pci0000:10" || strings.Join(gpu.Bridges, ",") != "0000:10:01.0,0000:11:00.0,0000:12:00.0" || gpu.NUMANode != 0 {
		t.Errorf("GPU 0 = %+v", gpu)
	}
	nic, err := sys.Device("0000:14:00.0")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pci.PathBridges(gpu, nic), ","); got != "0000:11:00.0,0000:12:00.0,0000:12:01.0" {
		t.Errorf("PathBridges = %s", got)
	}
	far, err := sys.Device("0000:84:00.0")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(pci.PathBridges(gpu, far)); got != 6 {
		t.Errorf("PathBridges across sockets has %d bridges, want 6", got)
	}
}

func TestDeviceErrors(t *testing.T) {
	m := hgx(t)
	sys := pci.SysFS{Root: m.SysRoot}
	if _, err := sys.Device("0000:ee:00.0"); err == nil || !strings.Contains(err.Error(), filepath.Join(m.SysRoot, "bus/pci/devices/0000:ee:00.0")) {
		t.Errorf("missing device: %v", err)
	}
	if _, err := sys.Device("1a:00.0"); err == nil || !strings.Contains(err.Error(), "not in sysfs form") {
		t.Errorf("bad address: %v", err)
	}
	numa := filepath.Join(m.SysRoot, m.DevicePath("0000:23:00.0"), "numa_node")
	if err := os.WriteFile(numa, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev, err := sys.Device("0000:23:00.0")
	if err == nil || !strings.Contains(err.Error(), numa) {
		t.Errorf("malformed numa_node: %v", err)
	}
	if dev.HostBridge != "pci0000:20" || len(dev.Bridges) != 3 || dev.NUMANode != -1 {
		t.Errorf("device with malformed numa_node = %+v, want placed with NUMA -1", dev)
	}
}

func extCap(cfg []byte, off int, id uint16, next int) {
	binary.LittleEndian.PutUint32(cfg[off:], uint32(id)|1<<16|uint32(next)<<20)
}

func TestParseACS(t *testing.T) {
	cfg := make([]byte, 4096)
	extCap(cfg, 0x100, 0x0001, 0x150)
	extCap(cfg, 0x150, 0x000b, 0x200)
	extCap(cfg, 0x200, pci.CapACS, 0)
	binary.LittleEndian.PutUint16(cfg[0x206:], pci.ACSSourceValidation|pci.ACSP2PCompletionRedirect)
	acs, err := pci.ParseACS(cfg)
	if err != nil || !acs.Present || acs.Offset != 0x200 || !acs.Redirects() || acs.ControlOffset() != 0x206 {
		t.Errorf("ParseACS = %+v, %v", acs, err)
	}

	none := make([]byte, 4096)
	extCap(none, 0x100, 0x0001, 0)
	if acs, err := pci.ParseACS(none); err != nil || acs.Present {
		t.Errorf("no ACS: %+v, %v", acs, err)
	}

	loop := make([]byte, 4096)
	extCap(loop, 0x100, 0x0001, 0x100)
	if _, err := pci.ParseACS(loop); err == nil || !strings.Contains(err.Error(), "loops") {
		t.Errorf("looping list: %v", err)
	}

	bad := make([]byte, 4096)
	extCap(bad, 0x100, 0x0001, 0x0a)
	if _, err := pci.ParseACS(bad); err == nil || !strings.Contains(err.Error(), "invalid next offset") {
		t.Errorf("bad next pointer: %v", err)
	}

	edge := make([]byte, 4096)
	extCap(edge, 0x100, 0x0001, 0xffc)
	extCap(edge, 0xffc, pci.CapACS, 0)
	if _, err := pci.ParseACS(edge); err == nil {
		t.Error("ACS at the very end of config space parsed without error")
	}

	if _, err := pci.ParseACS(make([]byte, 64)); err != pci.ErrNoExtendedConfig {
		t.Errorf("64-byte config space: %v", err)
	}
}

func TestConfigSpaceReadWrite(t *testing.T) {
	m := hgx(t)
	sys := pci.SysFS{Root: m.SysRoot}
	const bridge = "0000:12:01.0"
	acs, err := pci.ReadACS(sys, bridge)
	if err != nil || !acs.Present || acs.Control != fixtures.ACSSourceValidationOnly {
		t.Fatalf("ReadACS = %+v, %v", acs, err)
	}
	if err := sys.WriteConfig16(bridge, acs.ControlOffset(), 0x001d); err != nil {
		t.Fatal(err)
	}
	if got, err := m.ACSControl(bridge); err != nil || got != 0x001d {
		t.Errorf("after write: %#x, %v", got, err)
	}
	if _, err := pci.ReadACS(sys, "0000:ee:00.0"); err == nil || !strings.Contains(err.Error(), "0000:ee:00.0/config") {
		t.Errorf("missing config file: %v", err)
	}
}

func TestTurnPorts(t *testing.T) {
	gpu := pci.Device{HostBridge: "pci0008:00", Bridges: []string{"rp", "usp", "dsp1", "usp2", "dsp2"}}
	dd := pci.Device{HostBridge: "pci0008:00", Bridges: []string{"rp", "usp", "dsp0"}}
	if g, d := pci.TurnPorts(gpu, dd); g != "dsp1" || d != "dsp0" {
		t.Errorf("TurnPorts = %q, %q", g, d)
	}
	below := pci.Device{HostBridge: "pci0008:00", Bridges: []string{"rp", "usp"}}
	if g, d := pci.TurnPorts(gpu, below); g != "dsp1" || d != "" {
		t.Errorf("TurnPorts to a device below the shared bridge = %q, %q", g, d)
	}
	other := pci.Device{HostBridge: "pci0009:00", Bridges: []string{"rp", "usp", "dsp0"}}
	if g, d := pci.TurnPorts(gpu, other); g != "" || d != "" {
		t.Errorf("TurnPorts across host bridges = %q, %q", g, d)
	}
}
