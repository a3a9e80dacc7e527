package gpudirect_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpudirect"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

// input pairs GPU i with NIC i of a fixture, as discovery would.
func input(t *testing.T, m *fixtures.Machine) gpudirect.Input {
	t.Helper()
	sys := pci.SysFS{Root: m.SysRoot}
	in := gpudirect.Input{GPUCount: len(m.Spec.GPUs), NICCount: len(m.Spec.NICs)}
	for i, n := range m.Spec.NICs {
		g, err := sys.Device(m.Spec.GPUs[i].PCIBusID)
		if err != nil {
			t.Fatal(err)
		}
		nd, err := sys.Device(n.BDF)
		if err != nil {
			t.Fatal(err)
		}
		in.Pairs = append(in.Pairs, gpudirect.Pair{GPU: i, GPUBDF: g.BDF, NIC: n.Name, NICBDF: n.BDF, NICState: v1alpha1.PortActive,
			Level: pci.Level(g, nd), Bridges: pci.PathBridges(g, nd)})
	}
	return in
}

func checker(m *fixtures.Machine) gpudirect.Checker {
	return gpudirect.Checker{SysRoot: m.SysRoot, ProcRoot: m.ProcRoot, Config: pci.SysFS{Root: m.SysRoot}}
}

func result(r gpudirect.Result, name string) string {
	for _, c := range r.Checks {
		if c.Name == name {
			return string(c.Result) + "/" + c.Reason
		}
	}
	return "missing"
}

func build(t *testing.T, spec fixtures.Spec) *fixtures.Machine {
	m, err := fixtures.Build(t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestChecksPassOnHGX(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	r := checker(m).Check(context.Background(), input(t, m))
	if !r.Ready || r.Mode != v1alpha1.GPUDirectDMABuf || len(r.Checks) != 6 {
		t.Fatalf("result = %+v", r)
	}
	for _, c := range r.Checks {
		if c.Result != v1alpha1.CheckPass || c.Reason == "" || strings.ContainsAny(c.Reason, " -") {
			t.Errorf("check %+v: want Pass with a CamelCase reason", c)
		}
	}
}

func TestMemoryAccess(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*fixtures.Spec)
		want   string
		mode   v1alpha1.GPUDirectMode
	}{
		{"old kernel, peermem", func(s *fixtures.Spec) { s.Kernel = "5.4.0-150-generic"; s.PeerMem = true }, "Pass/PeerMem", v1alpha1.GPUDirectPeerMem},
		{"old kernel, no peermem", func(s *fixtures.Spec) { s.Kernel = "5.4.0-150-generic" }, "Fail/NoDMABufOrPeerMem", v1alpha1.GPUDirectNone},
		{"proprietary module", func(s *fixtures.Spec) { s.OpenKernelModule = false }, "Fail/NoDMABufOrPeerMem", v1alpha1.GPUDirectNone},
		{"no driver", func(s *fixtures.Spec) { s.DriverVersion = "" }, "Fail/NoDMABufOrPeerMem", v1alpha1.GPUDirectNone},
		{"unreadable osrelease", func(s *fixtures.Spec) { s.Kernel = "" }, "Unknown/Unreadable", v1alpha1.GPUDirectNone},
		{"6.x kernel", func(s *fixtures.Spec) { s.Kernel = "6.8.0-45-generic" }, "Pass/DMABuf", v1alpha1.GPUDirectDMABuf},
	} {
		spec := fixtures.HGXH100()
		tc.mutate(&spec)
		m := build(t, spec)
		r := checker(m).Check(context.Background(), input(t, m))
		if got := result(r, gpudirect.CheckMemoryAccess); got != tc.want || r.Mode != tc.mode {
			t.Errorf("%s: %s mode %s, want %s mode %s", tc.name, got, r.Mode, tc.want, tc.mode)
		}
		if strings.HasPrefix(tc.want, "Pass") != r.Ready {
			t.Errorf("%s: ready %v", tc.name, r.Ready)
		}
	}
}

func TestParseKernelRelease(t *testing.T) {
	for in, want := range map[string][2]int{"5.15.0-105-generic": {5, 15}, "6.8.0-1013-nvidia-64k": {6, 8}, "5.12": {5, 12}, "4.18.0-553.el8_10.x86_64": {4, 18}, "6.10rc1": {6, 10}} {
		maj, minor, err := gpudirect.ParseKernelRelease(in)
		if err != nil || maj != want[0] || minor != want[1] {
			t.Errorf("ParseKernelRelease(%q) = %d.%d, %v", in, maj, minor, err)
		}
	}
	for _, in := range []string{"", "six", "6", "x.1"} {
		if _, _, err := gpudirect.ParseKernelRelease(in); err == nil {
			t.Errorf("ParseKernelRelease(%q) succeeded", in)
		}
	}
}

func TestACSCheckAndConfigure(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	in := input(t, m)
	// Redirect on a downstream port between GPU 2 and NIC 2, and on a root
	// port, which is not between any GPU and its NIC.
	const onPath, offPath = "0000:32:01.0", "0000:30:01.0"
	for _, b := range []string{onPath, offPath} {
		if err := m.SetACSControl(b, fixtures.ACSRedirecting); err != nil {
			t.Fatal(err)
		}
	}
	c := checker(m)
	before := c.Check(context.Background(), in)
	if got := result(before, gpudirect.CheckACS); got != "Fail/ACSRedirectEnabled" || before.Ready {
		t.Fatalf("acs = %s, ready %v", got, before.Ready)
	}
	if msg := before.Checks[3].Message; !strings.Contains(msg, onPath) || strings.Contains(msg, offPath) {
		t.Errorf("message %q should name %s only", msg, onPath)
	}

	run := runner.NewFake()
	changes, err := gpudirect.Configurator{Runner: run, Config: pci.SysFS{Root: m.SysRoot}}.Configure(context.Background(), in, before)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || !strings.Contains(changes[0].What, onPath) {
		t.Errorf("changes = %+v", changes)
	}
	if got, _ := m.ACSControl(onPath); got != fixtures.ACSRedirecting&^pci.ACSRedirectBits {
		t.Errorf("%s ACS control %#x, want only the redirect bits cleared", onPath, got)
	}
	if got, _ := m.ACSControl(offPath); got != fixtures.ACSRedirecting {
		t.Errorf("%s (off the GPU-NIC paths) was changed to %#x", offPath, got)
	}
	if len(run.Calls()) != 0 {
		t.Errorf("ran %v although dma-buf is available", run.Calls())
	}
	if after := c.Check(context.Background(), in); !after.Ready {
		t.Errorf("not ready after configuring: %+v", after.Failed())
	}
}

func TestConfigureLoadsPeerMem(t *testing.T) {
	spec := fixtures.HGXH100()
	spec.OpenKernelModule = false
	m := build(t, spec)
	in := input(t, m)
	before := checker(m).Check(context.Background(), in)
	run := runner.NewFake()
	run.Set("modprobe nvidia-peermem", nil, nil)
	changes, err := gpudirect.Configurator{Runner: run, Config: pci.SysFS{Root: m.SysRoot}}.Configure(context.Background(), in, before)
	if err != nil || len(changes) != 1 || strings.Join(run.Calls(), ";") != "modprobe nvidia-peermem" {
		t.Errorf("changes %+v, err %v, calls %v", changes, err, run.Calls())
	}
}

func TestACSUnreadable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy gpudirect.ACSUnknownPolicy
		iommu  string
		ready  bool
	}{
		// Without an IOMMU Linux leaves ACS as firmware set it: auto lets
		// the node be ready.
		{"auto, no IOMMU", "", "", true},
		// With one (even iommu=pt) Linux turns redirect on: auto does not.
		{"auto, IOMMU passthrough", gpudirect.ACSUnknownAuto, "identity", false},
		{"strict, no IOMMU", gpudirect.ACSUnknownStrict, "", false},
		{"lenient, IOMMU passthrough", gpudirect.ACSUnknownLenient, "identity", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := fixtures.HGXH100()
			spec.IOMMU = tc.iommu
			m := build(t, spec)
			// What a non-root reader gets: the first 64 bytes.
			if err := os.Truncate(m.ConfigFile("0000:52:00.0"), 64); err != nil {
				t.Fatal(err)
			}
			c := checker(m)
			c.ACSUnknown = tc.policy
			r := c.Check(context.Background(), input(t, m))
			if got := result(r, gpudirect.CheckACS); got != "Unknown/ConfigSpaceUnreadable" || r.Ready != tc.ready {
				t.Errorf("acs = %s ready %v, want ready %v", got, r.Ready, tc.ready)
			}
			if msg := r.Checks[3].Message; !strings.Contains(msg, "ACS policy") || !strings.Contains(msg, "0000:52:00.0") {
				t.Errorf("acs message %q names neither the policy nor the bridge", msg)
			}
		})
	}
	// Any other Unknown still blocks: here the IOMMU list is unreadable.
	m := build(t, fixtures.HGXH100())
	if err := os.WriteFile(filepath.Join(m.SysRoot, "class", "iommu"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := checker(m)
	c.ACSUnknown = gpudirect.ACSUnknownLenient
	if r := c.Check(context.Background(), input(t, m)); r.Ready {
		t.Errorf("ready with checks %+v", r.Checks)
	}
	if _, err := gpudirect.ParseACSUnknownPolicy("loose"); err == nil || !strings.Contains(err.Error(), `"loose"`) {
		t.Errorf("ParseACSUnknownPolicy(loose) = %v", err)
	}
}

// The NICs' ATS makes IOMMU translation a supported setup, and ACS redirect
// with Direct Translated P2P harmless; configure mode then leaves ACS alone.
func TestIOMMUWithATS(t *testing.T) {
	spec := fixtures.HGXH100()
	spec.IOMMU = "DMA"
	for i := range spec.PCI {
		switch {
		case spec.PCI[i].Kind == fixtures.NIC:
			spec.PCI[i].ATS, spec.PCI[i].ATSEnabled = true, true
		case spec.PCI[i].BDF == "0000:32:01.0": // between GPU 2 and NIC 2
			spec.PCI[i].ACSControl = fixtures.ACSRedirecting | pci.ACSDirectTranslatedP2P
		}
	}
	m := build(t, spec)
	in := input(t, m)
	r := checker(m).Check(context.Background(), in)
	if got := result(r, gpudirect.CheckIOMMU); got != "Pass/IOMMUTranslationWithATS" {
		t.Errorf("iommu = %s", got)
	}
	if got := result(r, gpudirect.CheckACS); got != "Pass/DirectTranslatedP2P" || !r.Ready {
		t.Errorf("acs = %s, ready %v: %+v", got, r.Ready, r.Failed())
	}
	// Without Direct Translated P2P the redirect fails the node, and
	// configure mode, with the IOMMU translating, does not clear it.
	if err := m.SetACSControl("0000:32:01.0", fixtures.ACSRedirecting); err != nil {
		t.Fatal(err)
	}
	r = checker(m).Check(context.Background(), in)
	if got := result(r, gpudirect.CheckACS); got != "Fail/ACSRedirectEnabled" {
		t.Errorf("acs = %s", got)
	}
	changes, err := gpudirect.Configurator{Runner: runner.NewFake(), Config: pci.SysFS{Root: m.SysRoot}}.Configure(context.Background(), in, r)
	if err != nil || len(changes) != 0 {
		t.Errorf("configure changed %+v (err %v) under a translating IOMMU", changes, err)
	}
	if got, _ := m.ACSControl("0000:32:01.0"); got != fixtures.ACSRedirecting {
		t.Errorf("ACS control %#x, want it left alone", got)
	}
	// NICs without ATS under translation fail as before.
	spec = fixtures.HGXH100()
	spec.IOMMU = "DMA"
	m = build(t, spec)
	if got := result(checker(m).Check(context.Background(), input(t, m)), gpudirect.CheckIOMMU); got != "Fail/IOMMUTranslation" {
		t.Errorf("iommu without ATS = %s", got)
	}
}

// dma-buf needs the NIC's driver too; the legacy nv_peer_mem module counts
// as peer memory.
func TestMemoryAccessNICSideAndLegacyPeerMem(t *testing.T) {
	withDriver := func(driver string, mutate func(*fixtures.Spec)) *fixtures.Machine {
		spec := fixtures.HGXH100()
		for i := range spec.PCI {
			if spec.PCI[i].Kind == fixtures.NIC {
				spec.PCI[i].Driver = driver
			}
		}
		if mutate != nil {
			mutate(&spec)
		}
		return build(t, spec)
	}
	m := withDriver("bnxt_en", nil)
	r := checker(m).Check(context.Background(), input(t, m))
	if got := result(r, gpudirect.CheckMemoryAccess); got != "Fail/NoDMABufOrPeerMem" || !strings.Contains(r.Checks[1].Message, "mlx5_0's driver bnxt_en is not known to register dma-buf memory") {
		t.Errorf("memory access = %s: %s", got, r.Checks[1].Message)
	}
	m = withDriver("bnxt_en", func(s *fixtures.Spec) { s.NvPeerMem = true })
	r = checker(m).Check(context.Background(), input(t, m))
	if got := result(r, gpudirect.CheckMemoryAccess); got != "Pass/NvPeerMem" || r.Mode != v1alpha1.GPUDirectPeerMem {
		t.Errorf("memory access = %s mode %s", got, r.Mode)
	}
	m = withDriver("bnxt_en", func(s *fixtures.Spec) { s.PeerMem = true })
	if got := result(checker(m).Check(context.Background(), input(t, m)), gpudirect.CheckMemoryAccess); got != "Pass/PeerMem" {
		t.Errorf("memory access = %s", got)
	}
	// EFA of the second generation: no dma-buf; of the fourth: dma-buf.
	efa := func(device uint16) *fixtures.Machine {
		return withDriver("efa", func(s *fixtures.Spec) {
			for i := range s.PCI {
				if s.PCI[i].Kind == fixtures.NIC {
					s.PCI[i].Vendor, s.PCI[i].Device = fixtures.VendorAmazon, device
				}
			}
		})
	}
	m = efa(fixtures.DeviceEFA2)
	if got := result(checker(m).Check(context.Background(), input(t, m)), gpudirect.CheckMemoryAccess); got != "Fail/NoDMABufOrPeerMem" {
		t.Errorf("EFA gen 2 memory access = %s", got)
	}
	m = efa(0xefa3)
	if got := result(checker(m).Check(context.Background(), input(t, m)), gpudirect.CheckMemoryAccess); got != "Pass/DMABuf" {
		t.Errorf("EFA gen 4 memory access = %s", got)
	}
}

func TestIOMMU(t *testing.T) {
	spec := fixtures.HGXH100()
	spec.IOMMU = "DMA-FQ"
	m := build(t, spec)
	r := checker(m).Check(context.Background(), input(t, m))
	if got := result(r, gpudirect.CheckIOMMU); got != "Fail/IOMMUTranslation" {
		t.Errorf("iommu = %s", got)
	}
	spec.IOMMU = "identity"
	m = build(t, spec)
	if got := result(checker(m).Check(context.Background(), input(t, m)), gpudirect.CheckIOMMU); got != "Pass/IOMMUPassthrough" {
		t.Errorf("iommu = %s", got)
	}
	// A device whose group type cannot be read is Unknown, naming the file.
	group := filepath.Join(m.SysRoot, m.DevicePath("0000:13:00.0"), "iommu_group")
	if err := os.Remove(group); err != nil {
		t.Fatal(err)
	}
	r = checker(m).Check(context.Background(), input(t, m))
	if got := result(r, gpudirect.CheckIOMMU); got != "Unknown/Unreadable" || !strings.Contains(r.Checks[4].Message, "0000:13:00.0/iommu_group/type") {
		t.Errorf("iommu = %s: %s", got, r.Checks[4].Message)
	}
}

func TestNICPortAndPath(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	in := input(t, m)
	in.Pairs[4].NICState = v1alpha1.PortDown
	in.Pairs[6].Level = v1alpha1.PCIeLevelNODE
	r := checker(m).Check(context.Background(), in)
	if got := result(r, gpudirect.CheckNICPort); got != "Fail/NICPortNotActive" || !strings.Contains(r.Checks[5].Message, "mlx5_4 is Down") {
		t.Errorf("nic-port = %s: %s", got, r.Checks[5].Message)
	}
	if got := result(r, gpudirect.CheckPCIePath); got != "Fail/NICAcrossHostBridge" {
		t.Errorf("pcie-path = %s", got)
	}
	c := checker(m)
	c.MaxLevel = v1alpha1.PCIeLevelNODE
	if got := result(c.Check(context.Background(), in), gpudirect.CheckPCIePath); got != "Pass/NICNearGPU" {
		t.Errorf("pcie-path with NODE allowed = %s", got)
	}
	if got := result(c.Check(context.Background(), gpudirect.Input{GPUCount: 8}), gpudirect.CheckDevices); got != "Fail/NoRDMANICs" {
		t.Errorf("devices = %s", got)
	}
}
