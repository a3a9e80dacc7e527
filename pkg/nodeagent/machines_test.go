package nodeagent

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpudirect"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
)

// levelMatrix renders the published GPU x NIC level matrix as
// `nvidia-smi topo -m` does, one row per GPU, NICs in published order, so a
// test compares every cell at once.
func levelMatrix(st v1alpha1.NodeTopologyStatus) string {
	cell := map[string]v1alpha1.PCIeLevel{}
	for _, p := range st.PCIePaths {
		cell[fmt.Sprintf("%d/%s", p.GPU, p.NIC)] = p.Level
	}
	var b strings.Builder
	for _, g := range st.GPUs {
		fmt.Fprintf(&b, "GPU%d", g.Index)
		for _, n := range st.NICs {
			l, ok := cell[fmt.Sprintf("%d/%s", g.Index, n.Name)]
			if !ok {
				l = "-"
			}
			fmt.Fprintf(&b, " %s", l)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// readiness renders GPUDirect readiness, mode and every check's result.
func readiness(st v1alpha1.NodeTopologyStatus) string {
	g := st.GPUDirectRDMA
	parts := []string{fmt.Sprintf("ready=%v mode=%s", g.Ready, g.Mode)}
	for _, c := range g.Checks {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", c.Name, c.Result, c.Reason))
	}
	return strings.Join(parts, " ")
}

// conditions renders every condition as type=status/reason, sorted.
func conditions(st v1alpha1.NodeTopologyStatus) string {
	var parts []string
	for _, c := range st.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func assertText(t *testing.T, what, got, want string) {
	t.Helper()
	if strings.TrimSpace(got) != strings.TrimSpace(want) {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", what, got, want)
	}
}

const hgxH100Matrix = `
GPU0 PIX NODE NODE NODE SYS SYS SYS SYS
GPU1 NODE PIX NODE NODE SYS SYS SYS SYS
GPU2 NODE NODE PIX NODE SYS SYS SYS SYS
GPU3 NODE NODE NODE PIX SYS SYS SYS SYS
GPU4 SYS SYS SYS SYS PIX NODE NODE NODE
GPU5 SYS SYS SYS SYS NODE PIX NODE NODE
GPU6 SYS SYS SYS SYS NODE NODE PIX NODE
GPU7 SYS SYS SYS SYS NODE NODE NODE PIX`

// An HGX H100 node as NVML reports it: 18 NVSwitch links per GPU whose far
// end is FFFFFFFF:FF:FF.0. No warning, GPUsDiscovered stays True.
func TestMachineHGXH100(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	st := discoverer(m, leaf.Labels{}).Discover(context.Background(), hgxNode(m)).Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix", levelMatrix(st), hgxH100Matrix)
	assertText(t, "readiness", readiness(st), "ready=true mode=dma-buf devices=Pass/GPUsAndNICsFound gpu-memory-access=Pass/DMABuf pcie-path=Pass/NICNearGPU acs=Pass/NoACSRedirect iommu=Pass/IOMMUDisabled nic-port=Pass/NICPortsActive")
	assertText(t, "conditions", conditions(st), "GPUAllocationsKnown=True/PodResourcesListed GPUDirectRDMAReady=True/AllChecksPassed GPUsDiscovered=True/AllGPUsRead LeafDiscovered=True/LeafFound NICsDiscovered=True/AllNICsRead")
	for _, g := range st.GPUs {
		for _, l := range g.NVLinks {
			if l.RemotePCIBusID != "" || l.RemoteType != v1alpha1.NVLinkRemoteNVSwitch {
				t.Fatalf("GPU %d link %d: remote %q %s", g.Index, l.Link, l.RemotePCIBusID, l.RemoteType)
			}
		}
	}
}

// Two HGX boards whose fabric managers report Completed and Success with an
// all-zero cluster UUID are two NVLink domains, not one.
func TestTwoHGXBoardsNeverShareADomain(t *testing.T) {
	var domains []string
	for _, host := range []string{"hgx-a", "hgx-b"} {
		spec := fixtures.HGXH100()
		spec.Hostname = host
		for i := range spec.GPUs {
			spec.GPUs[i].Fabric = &gpu.Fabric{State: gpu.FabricCompleted, Status: "Success"}
		}
		m := build(t, spec)
		d := discoverer(m).Discover(context.Background(), leaf.Node{Name: host})
		domains = append(domains, d.NVLinkDomain)
	}
	if domains[0] != "hgx-a" || domains[1] != "hgx-b" {
		t.Errorf("NVLink domains %q, want each board its own", domains)
	}
}

// A GB200 tray's clique is trusted only when every GPU's fabric is
// Completed, healthy and reached through NVSwitch links, and all agree.
func TestFabricDomainTrust(t *testing.T) {
	clique := fmt.Sprintf("%s.%d", fixtures.GB200ClusterUUID, fixtures.GB200CliqueID)
	for _, tc := range []struct {
		name   string
		change func(*fixtures.Spec)
		want   string
	}{
		{"registered", func(*fixtures.Spec) {}, clique},
		{"in progress", func(s *fixtures.Spec) { s.GPUs[1].Fabric.State = gpu.FabricInProgress }, "gb200-rack1-tray3"},
		{"not started", func(s *fixtures.Spec) { s.GPUs[0].Fabric.State = gpu.FabricNotStarted }, "gb200-rack1-tray3"},
		{"unhealthy", func(s *fixtures.Spec) { s.GPUs[3].Fabric.Status = "NVML_ERROR_NOT_READY" }, "gb200-rack1-tray3"},
		{"no cluster UUID", func(s *fixtures.Spec) { s.GPUs[2].Fabric.ClusterUUID = "" }, "gb200-rack1-tray3"},
		{"cliques disagree", func(s *fixtures.Spec) { s.GPUs[2].Fabric.CliqueID++ }, "gb200-rack1-tray3"},
		{"one GPU without a fabric", func(s *fixtures.Spec) { s.GPUs[2].Fabric = nil }, "gb200-rack1-tray3"},
		{"NVLink to GPUs, not switches", func(s *fixtures.Spec) {
			for i := range s.GPUs {
				for l := range s.GPUs[i].NVLinks {
					s.GPUs[i].NVLinks[l].RemoteType = gpu.RemoteGPU
					s.GPUs[i].NVLinks[l].RemotePCIBusID = s.GPUs[i^1].PCIBusID
				}
			}
		}, "gb200-rack1-tray3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := fixtures.GB200Tray()
			for i := range spec.GPUs {
				f := *spec.GPUs[i].Fabric
				spec.GPUs[i].Fabric = &f
				spec.GPUs[i].NVLinks = slices.Clone(spec.GPUs[i].NVLinks)
			}
			tc.change(&spec)
			m := build(t, spec)
			if got := discoverer(m).Discover(context.Background(), leaf.Node{Name: spec.Hostname}).NVLinkDomain; got != tc.want {
				t.Errorf("NVLink domain %q, want %q", got, tc.want)
			}
		})
	}
}

// NICs in published (name) order: rdmap113s0 ... rdmap99s0, rdmap79s0 ...
const p5Matrix = `
GPU0 NODE NODE NODE NODE NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS PIX PIX PIX PIX NODE NODE NODE NODE
GPU1 NODE NODE NODE NODE NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS NODE NODE NODE NODE PIX PIX PIX PIX
GPU2 PIX PIX PIX PIX NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS NODE NODE NODE NODE NODE NODE NODE NODE
GPU3 NODE NODE NODE NODE PIX PIX PIX PIX SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS NODE NODE NODE NODE NODE NODE NODE NODE
GPU4 SYS SYS SYS SYS SYS SYS SYS SYS PIX PIX PIX PIX NODE NODE NODE NODE NODE NODE NODE NODE NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS
GPU5 SYS SYS SYS SYS SYS SYS SYS SYS NODE NODE NODE NODE PIX PIX PIX PIX NODE NODE NODE NODE NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS
GPU6 SYS SYS SYS SYS SYS SYS SYS SYS NODE NODE NODE NODE NODE NODE NODE NODE PIX PIX PIX PIX NODE NODE NODE NODE SYS SYS SYS SYS SYS SYS SYS SYS
GPU7 SYS SYS SYS SYS SYS SYS SYS SYS NODE NODE NODE NODE NODE NODE NODE NODE NODE NODE NODE NODE PIX PIX PIX PIX SYS SYS SYS SYS SYS SYS SYS SYS`

const allPass = "devices=Pass/GPUsAndNICsFound gpu-memory-access=Pass/%s pcie-path=Pass/NICNearGPU acs=Pass/NoACSRedirect iommu=Pass/IOMMUDisabled nic-port=Pass/NICPortsActive"

// p5.48xlarge: 32 EFA ports published as EFA (not IB), NICsDiscovered True,
// each GPU using its four EFAs, and every one of them checked.
func TestMachineP5(t *testing.T) {
	m := build(t, fixtures.P5())
	node := leaf.Node{Name: m.Spec.Hostname}
	d := discoverer(m).Discover(context.Background(), node)
	st := d.Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix", levelMatrix(st), p5Matrix)
	assertText(t, "readiness", readiness(st), "ready=true mode=peermem "+fmt.Sprintf(allPass, "PeerMem"))
	assertText(t, "conditions", conditions(st), "GPUAllocationsKnown=True/PodResourcesListed GPUDirectRDMAReady=True/AllChecksPassed GPUsDiscovered=True/AllGPUsRead LeafDiscovered=False/LeafUnknown NICsDiscovered=True/AllNICsRead")
	if st.NICCount != 32 {
		t.Fatalf("%d NICs, want 32", st.NICCount)
	}
	for _, n := range st.NICs {
		if n.LinkLayer != v1alpha1.LinkLayerEFA || n.RateGbps != 100 || n.State != v1alpha1.PortActive || n.NetDev != "" {
			t.Errorf("NIC %+v, want an active 100G EFA port without netdev", n)
		}
	}
	if got := fmt.Sprint(d.GPUNICs[2]); got != "[rdmap113s0 rdmap114s0 rdmap115s0 rdmap116s0]" {
		t.Errorf("GPU 2 uses %s", got)
	}

	// GPU 2's second EFA goes down: the node is no longer ready, and the
	// check names that EFA, not the first one.
	if err := m.SetPortState("rdmap114s0", "1: DOWN", "3: Disabled"); err != nil {
		t.Fatal(err)
	}
	st = discoverer(m).Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	if c := checkOf(st.GPUDirectRDMA, gpudirect.CheckNICPort); st.GPUDirectRDMA.Ready || c.Result != v1alpha1.CheckFail || c.Message != "rdmap114s0 is Down" {
		t.Errorf("ready %v, nic-port %+v", st.GPUDirectRDMA.Ready, c)
	}
	if err := m.SetPortState("rdmap114s0", "4: ACTIVE", "5: LinkUp"); err != nil {
		t.Fatal(err)
	}
	// ACS redirect on the downstream port above GPU 3's second EFA.
	if err := m.SetACSControl("0000:81:01.0", fixtures.ACSRedirecting); err != nil {
		t.Fatal(err)
	}
	st = discoverer(m).Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	if c := checkOf(st.GPUDirectRDMA, gpudirect.CheckACS); st.GPUDirectRDMA.Ready || c.Result != v1alpha1.CheckFail || !strings.Contains(c.Message, "0000:81:01.0") {
		t.Errorf("ready %v, acs %+v", st.GPUDirectRDMA.Ready, c)
	}
}

const azureNDv5Matrix = `
GPU0 PIX PHB PHB PHB SYS SYS SYS SYS
GPU1 PHB PIX PHB PHB SYS SYS SYS SYS
GPU2 PHB PHB PIX PHB SYS SYS SYS SYS
GPU3 PHB PHB PHB PIX SYS SYS SYS SYS
GPU4 SYS SYS SYS SYS PIX PHB PHB PHB
GPU5 SYS SYS SYS SYS PHB PIX PHB PHB
GPU6 SYS SYS SYS SYS PHB PHB PIX PHB
GPU7 SYS SYS SYS SYS PHB PHB PHB PIX`

const azureNDv5SysfsMatrix = `
GPU0 NODE NODE NODE NODE SYS SYS SYS SYS
GPU1 NODE NODE NODE NODE SYS SYS SYS SYS
GPU2 NODE NODE NODE NODE SYS SYS SYS SYS
GPU3 NODE NODE NODE NODE SYS SYS SYS SYS
GPU4 SYS SYS SYS SYS NODE NODE NODE NODE
GPU5 SYS SYS SYS SYS NODE NODE NODE NODE
GPU6 SYS SYS SYS SYS NODE NODE NODE NODE
GPU7 SYS SYS SYS SYS NODE NODE NODE NODE`

// Azure ND H100 v5: every device under a VMBus host bridge is placed; with
// Azure's NCCL topology file each GPU is PIX to its NIC and the node ready;
// from sysfs alone (no switch visible) the matrix is NODE/SYS and honest
// about it.
func TestMachineAzureNDH100v5(t *testing.T) {
	m := build(t, fixtures.AzureNDH100v5())
	node := leaf.Node{Name: m.Spec.Hostname}
	d := discoverer(m).Discover(context.Background(), node)
	st := d.Status(nil, time.Unix(1000, 0))
	if d.PCIErr != nil {
		t.Fatalf("PCI: %v", d.PCIErr)
	}
	assertText(t, "level matrix", levelMatrix(st), azureNDv5Matrix)
	assertText(t, "readiness", readiness(st), "ready=true mode=peermem "+fmt.Sprintf(allPass, "PeerMem"))
	assertText(t, "conditions", conditions(st), "GPUAllocationsKnown=True/PodResourcesListed GPUDirectRDMAReady=True/AllChecksPassed GPUsDiscovered=True/AllGPUsRead LeafDiscovered=False/LeafUnknown NICsDiscovered=True/AllNICsRead")
	if dev := d.PCI["0001:00:00.0"]; dev.HostBridge != "pci0001:00" || len(dev.Bridges) != 0 || dev.NUMANode != 0 {
		t.Errorf("GPU 0 placed as %+v", dev)
	}

	m.TopologyFile = ""
	st = discoverer(m).Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix from sysfs", levelMatrix(st), azureNDv5SysfsMatrix)
	assertText(t, "readiness from sysfs", readiness(st), "ready=false mode=peermem devices=Pass/GPUsAndNICsFound gpu-memory-access=Pass/PeerMem pcie-path=Fail/NICAcrossHostBridge acs=Pass/NoACSRedirect iommu=Pass/IOMMUDisabled nic-port=Pass/NICPortsActive")
}

const dgxA100Matrix = `
GPU0 PIX PIX NODE NODE SYS SYS SYS SYS
GPU1 PIX PIX NODE NODE SYS SYS SYS SYS
GPU2 NODE NODE PIX PIX SYS SYS SYS SYS
GPU3 NODE NODE PIX PIX SYS SYS SYS SYS
GPU4 SYS SYS SYS SYS PIX PIX NODE NODE
GPU5 SYS SYS SYS SYS PIX PIX NODE NODE
GPU6 SYS SYS SYS SYS NODE NODE PIX PIX
GPU7 SYS SYS SYS SYS NODE NODE PIX PIX`

// Broadcom PEX88096 switches that present two levels are flattened as NCCL
// flattens them: PIX where NCCL says PIX. The same tree with a switch
// vendor's own subsystem id (not base mode, which NCCL leaves alone) stays
// PXB.
func TestMachineDGXA100BroadcomSwitches(t *testing.T) {
	m := build(t, fixtures.DGXA100())
	st := discoverer(m).Discover(context.Background(), leaf.Node{Name: m.Spec.Hostname}).Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix", levelMatrix(st), dgxA100Matrix)
	assertText(t, "readiness", readiness(st), "ready=true mode=dma-buf "+fmt.Sprintf(allPass, "DMABuf"))
	assertText(t, "conditions", conditions(st), "GPUAllocationsKnown=True/PodResourcesListed GPUDirectRDMAReady=True/AllChecksPassed GPUsDiscovered=True/AllGPUsRead LeafDiscovered=False/LeafUnknown NICsDiscovered=True/AllNICsRead")

	spec := fixtures.DGXA100()
	for i := range spec.PCI {
		if spec.PCI[i].Vendor == fixtures.VendorBroadcom {
			spec.PCI[i].SubVendor = 0x15d9
		}
	}
	m = build(t, spec)
	st = discoverer(m).Discover(context.Background(), leaf.Node{Name: m.Spec.Hostname}).Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix, not flattened", levelMatrix(st), strings.ReplaceAll(dgxA100Matrix, "PIX", "PXB"))
}

// An unprivileged agent cannot read ACS: with no IOMMU the default policy
// lets the node be ready, and the condition says what was not verified
// instead of contradicting the label.
func TestACSUnknownIsVisibleAndConsistent(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	for _, p := range m.Spec.PCI {
		if p.Kind == fixtures.Bridge {
			if err := os.Truncate(m.ConfigFile(p.BDF), 64); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := discoverer(m, leaf.Labels{}).Discover(context.Background(), hgxNode(m))
	st := d.Status(nil, time.Unix(1000, 0))
	assertText(t, "readiness", readiness(st), "ready=true mode=dma-buf devices=Pass/GPUsAndNICsFound gpu-memory-access=Pass/DMABuf pcie-path=Pass/NICNearGPU acs=Unknown/ConfigSpaceUnreadable iommu=Pass/IOMMUDisabled nic-port=Pass/NICPortsActive")
	c := d.GPUDirectCondition()
	if c.Status != "True" || c.Reason != "PassedWithUnknownChecks" || !strings.Contains(c.Message, "acs Unknown") || d.NodeLabels()["tandem.dev/gpudirect-rdma"] != "true" {
		t.Errorf("condition %+v, label %q", c, d.NodeLabels()["tandem.dev/gpudirect-rdma"])
	}
	// Strict: not ready, and the condition, label and status agree.
	dd := discoverer(m, leaf.Labels{})
	dd.Checker.ACSUnknown = gpudirect.ACSUnknownStrict
	d = dd.Discover(context.Background(), hgxNode(m))
	if c := d.GPUDirectCondition(); d.GPUDirect.Ready || c.Status != "False" || c.Reason != "ConfigSpaceUnreadable" || d.NodeLabels()["tandem.dev/gpudirect-rdma"] != "false" {
		t.Errorf("strict: ready %v, condition %+v", d.GPUDirect.Ready, c)
	}
}

// gpuReadiness renders each GPU's published GPUDirect readiness as
// GPU<i> ready|blocked:<checks> [NICs], one line per GPU.
func gpuReadiness(st v1alpha1.NodeTopologyStatus) string {
	var b strings.Builder
	for _, g := range st.GPUDirectRDMA.GPUs {
		verdict := "ready"
		if !g.Ready {
			verdict = "blocked:" + strings.Join(g.BlockingChecks, ",")
		}
		fmt.Fprintf(&b, "GPU%d %s %v\n", g.GPU, verdict, g.NICs)
	}
	return b.String()
}

const twoSocketOneNICMatrix = `
GPU0 PIX
GPU1 PIX
GPU2 PXB
GPU3 PXB
GPU4 SYS
GPU5 SYS
GPU6 SYS
GPU7 SYS`

// A two-socket server with one NIC, on socket 0: the node is not ready (the
// far GPUs reach the NIC only across the sockets) and keeps its label and
// condition, but the four GPUs near the NIC are ready one by one. The
// node-wide checks (here dma-buf) and a GPU's own NIC port count per GPU.
func TestMachineTwoSocketOneNIC(t *testing.T) {
	m := build(t, fixtures.TwoSocketOneNIC())
	node := leaf.Node{Name: m.Spec.Hostname}
	d := discoverer(m).Discover(context.Background(), node)
	st := d.Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix", levelMatrix(st), twoSocketOneNICMatrix)
	assertText(t, "readiness", readiness(st), "ready=false mode=dma-buf devices=Pass/GPUsAndNICsFound gpu-memory-access=Pass/DMABuf pcie-path=Fail/NICAcrossHostBridge acs=Pass/NoACSRedirect iommu=Pass/IOMMUDisabled nic-port=Pass/NICPortsActive")
	assertText(t, "conditions", conditions(st), "GPUAllocationsKnown=True/PodResourcesListed GPUDirectRDMAReady=False/NICAcrossHostBridge GPUsDiscovered=True/AllGPUsRead LeafDiscovered=False/LeafUnknown NICsDiscovered=True/AllNICsRead")
	assertText(t, "per-GPU readiness", gpuReadiness(st), `
GPU0 ready [mlx5_0]
GPU1 ready [mlx5_0]
GPU2 ready [mlx5_0]
GPU3 ready [mlx5_0]
GPU4 blocked:pcie-path [mlx5_0]
GPU5 blocked:pcie-path [mlx5_0]
GPU6 blocked:pcie-path [mlx5_0]
GPU7 blocked:pcie-path [mlx5_0]`)
	if got := d.NodeLabels()["tandem.dev/gpudirect-rdma"]; got != "false" {
		t.Errorf("label %q, want false: the node's verdict is unchanged", got)
	}

	// ACS redirect on the switch port above GPU 0 blocks GPU 0 alone: no
	// other GPU's path to the NIC crosses it.
	if err := m.SetACSControl("0000:04:00.0", fixtures.ACSRedirecting); err != nil {
		t.Fatal(err)
	}
	st = discoverer(m).Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	assertText(t, "per-GPU readiness, ACS above GPU 0", gpuReadiness(st), `
GPU0 blocked:acs [mlx5_0]
GPU1 ready [mlx5_0]
GPU2 ready [mlx5_0]
GPU3 ready [mlx5_0]
GPU4 blocked:pcie-path [mlx5_0]
GPU5 blocked:pcie-path [mlx5_0]
GPU6 blocked:pcie-path [mlx5_0]
GPU7 blocked:pcie-path [mlx5_0]`)
	if err := m.SetACSControl("0000:04:00.0", fixtures.ACSSourceValidationOnly); err != nil {
		t.Fatal(err)
	}

	// The NIC's port down blocks every GPU; no peer-memory path blocks
	// every GPU too.
	if err := m.SetPortState("mlx5_0", "1: DOWN", "3: Disabled"); err != nil {
		t.Fatal(err)
	}
	st = discoverer(m).Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	assertText(t, "per-GPU readiness, port down", gpuReadiness(st), `
GPU0 blocked:nic-port [mlx5_0]
GPU1 blocked:nic-port [mlx5_0]
GPU2 blocked:nic-port [mlx5_0]
GPU3 blocked:nic-port [mlx5_0]
GPU4 blocked:nic-port,pcie-path [mlx5_0]
GPU5 blocked:nic-port,pcie-path [mlx5_0]
GPU6 blocked:nic-port,pcie-path [mlx5_0]
GPU7 blocked:nic-port,pcie-path [mlx5_0]`)
}

// BenchmarkDiscoverMachines is one whole discovery pass (NVML fake, sysfs
// tree, GPUDirect checks) and its status, per fixture.
func BenchmarkDiscoverMachines(b *testing.B) {
	for _, spec := range []fixtures.Spec{fixtures.HGXH100(), fixtures.PCIeServer(), fixtures.GB200Tray(), fixtures.P5(), fixtures.AzureNDH100v5(), fixtures.DGXA100(), fixtures.TwoSocketOneNIC(), fixtures.GB300Tray()} {
		b.Run(spec.Hostname, func(b *testing.B) {
			m := build(b, spec)
			d := discoverer(m, leaf.Labels{})
			node := leaf.Node{Name: spec.Hostname}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = d.Discover(ctx, node).Status(nil, time.Unix(1000, 0))
			}
		})
	}
}
