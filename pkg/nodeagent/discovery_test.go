package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpudirect"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
)

func build(tb testing.TB, spec fixtures.Spec) *fixtures.Machine {
	tb.Helper()
	m, err := fixtures.Build(tb.TempDir(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func discoverer(m *fixtures.Machine, sources ...leaf.Source) *Discoverer {
	var topo *pci.TopologyFile
	if m.TopologyFile != "" {
		var err error
		if topo, err = pci.LoadTopologyFile(m.TopologyFile); err != nil {
			panic(err)
		}
	}
	return &Discoverer{
		Topology:    topo,
		SysRoot:     m.SysRoot,
		NVML:        m.NVML,
		LeafSources: sources,
		Checker:     gpudirect.Checker{SysRoot: m.SysRoot, ProcRoot: m.ProcRoot, Config: pci.SysFS{Root: m.SysRoot}},
	}
}

func hgxNode(m *fixtures.Machine) leaf.Node {
	return leaf.Node{Name: m.Spec.Hostname, Labels: map[string]string{
		"network.topology.nvidia.com/tier-0": "leaf-07",
		"network.topology.nvidia.com/tier-1": "spine-2",
	}}
}

func conditionOf(st v1alpha1.NodeTopologyStatus, t string) string {
	for _, c := range st.Conditions {
		if c.Type == t {
			return fmt.Sprintf("%s/%s", c.Status, c.Reason)
		}
	}
	return "missing"
}

func TestDiscoverHGXH100(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	d := discoverer(m, leaf.Labels{}).Discover(context.Background(), hgxNode(m))
	st := d.Status(nil, time.Unix(1000, 0))

	if st.GPUCount != 8 || len(st.GPUs) != 8 || st.NICCount != 8 || len(st.NICs) != 8 {
		t.Fatalf("counts: gpus %d/%d nics %d/%d, want 8", st.GPUCount, len(st.GPUs), st.NICCount, len(st.NICs))
	}
	if islands := st.Islands(); len(islands) != 1 || len(islands[0]) != 8 {
		t.Errorf("islands = %+v, want one island of 8 GPUs behind the NVSwitches", islands)
	}
	g3 := st.GPUs[3]
	if g3.PCIBusID != "0000:43:00.0" || g3.NUMANode != 0 || len(g3.NVLinkPeers) != 7 || len(g3.NVLinks) != 18 || g3.NVLinks[0].RemoteType != v1alpha1.NVLinkRemoteNVSwitch {
		t.Errorf("GPU 3 = %+v", g3)
	}
	if st.GPUs[5].NUMANode != 1 {
		t.Errorf("GPU 5 NUMA = %d, want 1", st.GPUs[5].NUMANode)
	}
	if len(st.PCIePaths) != 64 {
		t.Fatalf("%d PCIe paths, want 64", len(st.PCIePaths))
	}
	for _, p := range st.PCIePaths {
		var want v1alpha1.PCIeLevel
		nic := int32(p.NIC[len(p.NIC)-1] - '0')
		switch {
		case nic == p.GPU:
			want = v1alpha1.PCIeLevelPIX
		case nic/4 == p.GPU/4:
			want = v1alpha1.PCIeLevelNODE
		default:
			want = v1alpha1.PCIeLevelSYS
		}
		if p.Level != want {
			t.Errorf("GPU %d - %s: level %s, want %s", p.GPU, p.NIC, p.Level, want)
		}
	}
	for i, n := range st.NICs {
		if n.Name != fmt.Sprintf("mlx5_%d", i) || n.Rail != int32(i) || n.State != v1alpha1.PortActive || n.LinkLayer != v1alpha1.LinkLayerInfiniBand ||
			n.RateGbps != 400 || n.Leaf != "leaf-07" || n.LeafSource != v1alpha1.LeafSourceLabel || n.NetDev == "" || n.NodeGUID == "" {
			t.Errorf("NIC %d = %+v", i, n)
		}
	}
	if st.Leaf != "leaf-07" || st.Spine != "spine-2" || st.NVLinkDomain != m.Spec.Hostname {
		t.Errorf("leaf %q spine %q nvlink domain %q", st.Leaf, st.Spine, st.NVLinkDomain)
	}
	if !st.GPUDirectRDMA.Ready || st.GPUDirectRDMA.Mode != v1alpha1.GPUDirectDMABuf {
		t.Errorf("GPUDirect = %+v, want ready with dma-buf", st.GPUDirectRDMA)
	}
	for _, c := range []string{ConditionGPUsDiscovered, ConditionNICsDiscovered, ConditionLeafDiscovered, ConditionGPUDirectRDMAReady} {
		if got := conditionOf(st, c); !strings.HasPrefix(got, "True/") {
			t.Errorf("condition %s = %s, want True", c, got)
		}
	}
	labels := d.NodeLabels()
	if labels["tandem.dev/leaf"] != "leaf-07" || labels["tandem.dev/gpudirect-rdma"] != "true" || labels["tandem.dev/nvlink-domain"] != m.Spec.Hostname {
		t.Errorf("labels = %v", labels)
	}
}

func TestDiscoverPCIeServer(t *testing.T) {
	m := build(t, fixtures.PCIeServer())
	d := discoverer(m).Discover(context.Background(), leaf.Node{Name: m.Spec.Hostname})
	st := d.Status(nil, time.Unix(1000, 0))
	if len(st.Islands()) != 2 || fmt.Sprint(st.Islands()[0], st.Islands()[1]) != "[0 1] [2 3]" {
		t.Errorf("islands = %+v, want the two NVLink-bridge pairs", st.Islands())
	}
	levels := map[string]v1alpha1.PCIeLevel{}
	for _, p := range st.PCIePaths {
		levels[fmt.Sprintf("%d-%s", p.GPU, p.NIC)] = p.Level
	}
	want := map[string]v1alpha1.PCIeLevel{
		"0-mlx5_0": "PIX", "0-mlx5_1": "NODE", "1-mlx5_1": "PIX", "1-mlx5_0": "NODE",
		"2-mlx5_0": "SYS", "2-mlx5_1": "SYS", "3-mlx5_0": "SYS", "3-mlx5_1": "SYS",
	}
	for k, v := range want {
		if levels[k] != v {
			t.Errorf("%s: level %s, want %s", k, levels[k], v)
		}
	}
	// GPUs 2 and 3 spread over both NICs rather than piling onto one.
	if d.BestNIC[2] == d.BestNIC[3] {
		t.Errorf("best NICs of GPUs 2 and 3 are both %s", d.BestNIC[2])
	}
	g := st.GPUDirectRDMA
	if g.Ready || g.Mode != v1alpha1.GPUDirectPeerMem {
		t.Errorf("GPUDirect ready=%v mode=%s, want not ready, peermem", g.Ready, g.Mode)
	}
	if got := checkOf(g, gpudirect.CheckPCIePath); got.Result != v1alpha1.CheckFail || got.Reason != "NICAcrossHostBridge" {
		t.Errorf("pcie-path check = %+v", got)
	}
	if got := checkOf(g, gpudirect.CheckIOMMU); got.Result != v1alpha1.CheckPass || got.Reason != "IOMMUPassthrough" {
		t.Errorf("iommu check = %+v", got)
	}
	if st.NICs[0].LinkLayer != v1alpha1.LinkLayerRoCE || st.NICs[0].RateGbps != 200 {
		t.Errorf("NIC 0 = %+v", st.NICs[0])
	}
	if st.NVLinkDomain != m.Spec.Hostname {
		t.Errorf("NVLink domain %q, want the node name", st.NVLinkDomain)
	}
	if got := conditionOf(st, ConditionLeafDiscovered); got != "False/LeafUnknown" {
		t.Errorf("LeafDiscovered = %s", got)
	}
}

func TestDiscoverGB200Tray(t *testing.T) {
	m := build(t, fixtures.GB200Tray())
	d := discoverer(m).Discover(context.Background(), leaf.Node{Name: m.Spec.Hostname})
	st := d.Status(nil, time.Unix(1000, 0))
	if want := fmt.Sprintf("%s.%d", fixtures.GB200ClusterUUID, fixtures.GB200CliqueID); st.NVLinkDomain != want {
		t.Errorf("NVLink domain %q, want %q", st.NVLinkDomain, want)
	}
	if st.GPUCount != 4 || st.NICCount != 4 || len(st.Islands()) != 1 {
		t.Errorf("gpus %d nics %d islands %+v", st.GPUCount, st.NICCount, st.Islands())
	}
	if f := st.GPUs[2].Fabric; f == nil || f.State != v1alpha1.FabricCompleted || f.CliqueID != fixtures.GB200CliqueID {
		t.Errorf("GPU 2 fabric = %+v", f)
	}
	if st.GPUs[2].PCIBusID != "0010:03:00.0" || st.GPUs[2].NUMANode != 1 {
		t.Errorf("GPU 2 = %s NUMA %d", st.GPUs[2].PCIBusID, st.GPUs[2].NUMANode)
	}
	if !st.GPUDirectRDMA.Ready {
		t.Errorf("GPUDirect not ready: %+v", st.GPUDirectRDMA.Checks)
	}
}

func checkOf(g v1alpha1.GPUDirectRDMA, name string) v1alpha1.GPUDirectCheck {
	for _, c := range g.Checks {
		if c.Name == name {
			return c
		}
	}
	return v1alpha1.GPUDirectCheck{}
}

// Without a driver the agent still publishes the NICs, with a condition.
func TestDiscoverWithoutDriver(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	m.NVML.SetInitError(fmt.Errorf("loading libnvidia-ml.so.1: %w", gpu.ErrLibraryNotFound))
	d := discoverer(m).Discover(context.Background(), hgxNode(m))
	st := d.Status(nil, time.Unix(1000, 0))
	if st.GPUCount != 0 || st.NICCount != 8 {
		t.Errorf("gpus %d nics %d, want 0 and 8", st.GPUCount, st.NICCount)
	}
	if got := conditionOf(st, ConditionGPUsDiscovered); got != "False/NVMLNotFound" {
		t.Errorf("GPUsDiscovered = %s", got)
	}
	if st.GPUDirectRDMA.Ready || checkOf(st.GPUDirectRDMA, gpudirect.CheckDevices).Reason != "NoGPUs" {
		t.Errorf("GPUDirect = %+v", st.GPUDirectRDMA)
	}
}

// A GPU fallen off the bus is reported; the other seven are published.
func TestDiscoverLostGPU(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	m.NVML.SetDeviceError(6, gpu.ErrGPULost)
	st := discoverer(m).Discover(context.Background(), hgxNode(m)).Status(nil, time.Unix(1000, 0))
	if st.GPUCount != 7 || len(st.Islands()) != 1 || len(st.Islands()[0]) != 7 {
		t.Errorf("gpus %d islands %+v", st.GPUCount, st.Islands())
	}
	if got := conditionOf(st, ConditionGPUsDiscovered); got != "False/GPULost" {
		t.Errorf("GPUsDiscovered = %s", got)
	}
}

// A malformed sysfs file is named in the condition and loses nothing else.
func TestDiscoverMalformedSysfs(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	rate := m.PortFile("mlx5_2", "rate")
	if err := os.WriteFile(rate, []byte("fast\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	numa := filepath.Join(m.SysRoot, m.DevicePath("0000:54:00.0"), "numa_node")
	if err := os.WriteFile(numa, []byte("zero\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := discoverer(m).Discover(context.Background(), hgxNode(m)).Status(nil, time.Unix(1000, 0))
	if st.NICCount != 8 || st.GPUCount != 8 || len(st.PCIePaths) != 64 {
		t.Fatalf("gpus %d nics %d paths %d", st.GPUCount, st.NICCount, len(st.PCIePaths))
	}
	var msg string
	for _, c := range st.Conditions {
		if c.Type == ConditionNICsDiscovered {
			msg = c.Message
		}
	}
	if !strings.Contains(msg, rate) || !strings.Contains(msg, numa) {
		t.Errorf("NICsDiscovered message %q does not name %s and %s", msg, rate, numa)
	}
	if st.NICs[2].RateGbps != 0 || st.NICs[2].State != v1alpha1.PortActive {
		t.Errorf("NIC 2 = %+v, want rate unknown and the rest read", st.NICs[2])
	}
}

func TestStatusEqualIgnoresHeartbeatOnly(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	d := discoverer(m).Discover(context.Background(), hgxNode(m))
	a := d.Status(nil, time.Unix(1000, 0))
	b := d.Status(a.Conditions, time.Unix(2000, 0))
	b.LastHeartbeatTime.Time = time.Unix(3000, 0)
	if !StatusEqual(a, b) {
		t.Error("statuses differing only in heartbeat compare unequal")
	}
	b.NICs[1].State = v1alpha1.PortDown
	if StatusEqual(a, b) {
		t.Error("a NIC state change compares equal")
	}
}

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("leaf-switch-", 8)
	for _, tc := range []struct{ in, want string }{
		{"leaf-07", "leaf-07"},
		{"", ""},
		{fixtures.GB200ClusterUUID + ".32766", fixtures.GB200ClusterUUID + ".32766"},
	} {
		if got := LabelValue(tc.in); got != tc.want {
			t.Errorf("LabelValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{long, "leaf a/b", "-x-"} {
		got := LabelValue(in)
		if len(got) > 63 || got == in || !isValidLabel(got) {
			t.Errorf("LabelValue(%q) = %q, not a valid stand-in", in, got)
		}
		if LabelValue(in+"x") == got {
			t.Errorf("LabelValue(%q) collides with a different value", in)
		}
	}
}

func BenchmarkDiscoverHGXH100(b *testing.B) {
	m := build(b, fixtures.HGXH100())
	d := discoverer(m, leaf.Labels{})
	node := hgxNode(m)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		out := d.Discover(ctx, node)
		_ = out.Status(nil, time.Unix(1000, 0))
	}
}
