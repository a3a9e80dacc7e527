package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpudirect"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

// Measured from the Data Direct functions: each GPU shares its NIC's
// internal switch with that NIC's Data Direct function (two switch levels,
// PXB); the other socket's GPU in the same NUMA node is NODE, the far
// socket SYS. From the main functions, in domains of their own, the same
// tray reads NODE/SYS everywhere.
const gb300Matrix = `
GPU0 PXB NODE SYS SYS
GPU1 NODE PXB SYS SYS
GPU2 SYS SYS PXB NODE
GPU3 SYS SYS NODE PXB`

const gb300MainFunctionMatrix = `
GPU0 NODE NODE SYS SYS
GPU1 NODE NODE SYS SYS
GPU2 SYS SYS NODE NODE
GPU3 SYS SYS NODE NODE`

// A ConnectX-8 Data Direct tray with ACS as rdma_topo sets it: every NIC is
// published with its Data Direct function, the level matrix is measured
// from those functions, and the tray and each GPU are GPUDirect-ready.
func TestMachineGB300DataDirect(t *testing.T) {
	m := build(t, fixtures.GB300Tray())
	node := leaf.Node{Name: m.Spec.Hostname}
	d := discoverer(m).Discover(context.Background(), node)
	if d.NICErr != nil || d.PCIErr != nil {
		t.Fatalf("NIC error %v, PCI error %v", d.NICErr, d.PCIErr)
	}
	st := d.Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix", levelMatrix(st), gb300Matrix)
	assertText(t, "readiness", readiness(st), "ready=true mode=dma-buf devices=Pass/GPUsAndNICsFound gpu-memory-access=Pass/DMABuf pcie-path=Pass/NICNearGPU acs=Pass/NoACSRedirect iommu=Pass/IOMMUPassthrough nic-port=Pass/NICPortsActive")
	assertText(t, "per-GPU readiness", gpuReadiness(st), "GPU0 ready [mlx5_0]\nGPU1 ready [mlx5_1]\nGPU2 ready [mlx5_2]\nGPU3 ready [mlx5_3]")
	var nics []string
	for _, n := range st.NICs {
		nics = append(nics, n.Name+"="+n.PCIBusID+"/"+n.DataDirectPCIBusID)
	}
	assertText(t, "NICs", strings.Join(nics, " "), "mlx5_0=0000:01:00.0/0008:03:00.0 mlx5_1=0002:01:00.0/0009:03:00.0 mlx5_2=0010:01:00.0/0018:03:00.0 mlx5_3=0012:01:00.0/0019:03:00.0")
	if c := checkOf(st.GPUDirectRDMA, gpudirect.CheckACS); c.Message != "no P2P redirect on the 8 bridges between GPUs and NICs" {
		t.Errorf("acs %+v", c)
	}
}

// The kernel's ACS default with an IOMMU (request and completion redirect
// on every downstream port) sends the Data Direct function's requests to the
// root port: GPU 1 is blocked and the check names the port above its Data
// Direct function. Completion redirect there, or request redirect on the
// GPU's port, is what rdma_topo leaves on and does not block.
func TestMachineGB300DataDirectACS(t *testing.T) {
	m := build(t, fixtures.GB300Tray())
	node := leaf.Node{Name: m.Spec.Hostname}
	if err := m.SetACSControl("0009:02:00.0", fixtures.ACSRedirecting); err != nil {
		t.Fatal(err)
	}
	st := discoverer(m).Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	c := checkOf(st.GPUDirectRDMA, gpudirect.CheckACS)
	if st.GPUDirectRDMA.Ready || c.Result != v1alpha1.CheckFail || c.Message != "P2P request/completion redirect is enabled on bridges 0009:02:00.0 (ACS control 0x001d)" {
		t.Errorf("ready %v, acs %+v", st.GPUDirectRDMA.Ready, c)
	}
	assertText(t, "per-GPU readiness", gpuReadiness(st), "GPU0 ready [mlx5_0]\nGPU1 blocked:acs [mlx5_1]\nGPU2 ready [mlx5_2]\nGPU3 ready [mlx5_3]")

	// Completion redirect on the GPU's port stops the GPU's completions to
	// the Data Direct function's reads.
	if err := m.SetACSControl("0009:02:00.0", fixtures.ACSDataDirectPort); err != nil {
		t.Fatal(err)
	}
	if err := m.SetACSControl("0018:02:01.0", fixtures.ACSRedirecting); err != nil {
		t.Fatal(err)
	}
	st = discoverer(m).Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	assertText(t, "per-GPU readiness", gpuReadiness(st), "GPU0 ready [mlx5_0]\nGPU1 ready [mlx5_1]\nGPU2 blocked:acs [mlx5_2]\nGPU3 ready [mlx5_3]")

	// --configure-gpudirect clears exactly the bit that blocks: completion
	// redirect on the GPU's port, request redirect staying on, and the
	// ports of the other GPUs as rdma_topo set them.
	dr := discoverer(m)
	dr.Configurator = &gpudirect.Configurator{Runner: runner.NewFake(), Config: pci.SysFS{Root: m.SysRoot}}
	d := dr.Discover(context.Background(), node)
	if d.ConfigureErr != nil || len(d.GPUDirectChanges) != 1 || !d.GPUDirect.Ready {
		t.Errorf("changes %+v, err %v, ready %v", d.GPUDirectChanges, d.ConfigureErr, d.GPUDirect.Ready)
	}
	if got, _ := m.ACSControl("0018:02:01.0"); got != fixtures.ACSRedirecting&^pci.ACSP2PCompletionRedirect {
		t.Errorf("GPU 2's port ACS control %#x, want only completion redirect cleared", got)
	}
	for _, b := range []string{"0008:02:01.0", "0009:02:01.0", "0019:02:01.0"} {
		if got, _ := m.ACSControl(b); got != fixtures.ACSDataDirectGPU {
			t.Errorf("%s ACS control %#x, want it left alone", b, got)
		}
	}
}

// A Data Direct function whose VPD cannot be read, or carries no V3, is
// named in the NIC error and its NIC falls back to the main function: the
// matrix says where that NIC's main function is, and nothing is invented.
// Those GPUs' paths to the main function cross their root ports, whose
// redirect rdma_topo leaves on, so acs blocks them as well.
func TestMachineGB300DataDirectUnmatched(t *testing.T) {
	m := build(t, fixtures.GB300Tray())
	vpd := filepath.Join(m.SysRoot, "bus", "pci", "devices", "0008:03:00.0", "vpd")
	if err := os.WriteFile(vpd, fixtures.VPD("NVIDIA ConnectX-8 SuperNIC", map[string]string{"SN": "MT2450X00"}), 0o644); err != nil {
		t.Fatal(err)
	}
	// A truncated VPD on GPU 3's Data Direct function.
	vpd3 := filepath.Join(m.SysRoot, "bus", "pci", "devices", "0019:03:00.0", "vpd")
	if err := os.WriteFile(vpd3, []byte{0x82, 0x40, 0x00, 'N'}, 0o644); err != nil {
		t.Fatal(err)
	}
	d := discoverer(m).Discover(context.Background(), leaf.Node{Name: m.Spec.Hostname})
	if d.NICErr == nil || !strings.Contains(d.NICErr.Error(), "Data Direct function 0008:03:00.0: "+vpd+" has no V3 keyword") ||
		!strings.Contains(d.NICErr.Error(), "Data Direct function 0019:03:00.0: "+vpd3+": VPD resource 0x82 at offset 0 claims 64 bytes, 1 remain") {
		t.Errorf("NIC error %v", d.NICErr)
	}
	st := d.Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix", levelMatrix(st), `
GPU0 NODE NODE SYS SYS
GPU1 NODE PXB SYS SYS
GPU2 SYS SYS PXB NODE
GPU3 SYS SYS NODE NODE`)
	assertText(t, "per-GPU readiness", gpuReadiness(st), "GPU0 blocked:acs,pcie-path [mlx5_0 mlx5_1]\nGPU1 ready [mlx5_1]\nGPU2 ready [mlx5_2]\nGPU3 blocked:acs,pcie-path [mlx5_2 mlx5_3]")
}

// Without Data Direct (the NICs' VPD gone, as on an agent that cannot read
// it) the tray reads as the old agent saw it.
func TestMachineGB300WithoutVPD(t *testing.T) {
	m := build(t, fixtures.GB300Tray())
	for _, n := range m.Spec.NICs {
		if err := os.Remove(filepath.Join(m.SysRoot, m.DevicePath(n.BDF), "vpd")); err != nil {
			t.Fatal(err)
		}
	}
	st := discoverer(m).Discover(context.Background(), leaf.Node{Name: m.Spec.Hostname}).Status(nil, time.Unix(1000, 0))
	assertText(t, "level matrix", levelMatrix(st), gb300MainFunctionMatrix)
	if st.GPUDirectRDMA.Ready || checkOf(st.GPUDirectRDMA, gpudirect.CheckPCIePath).Result != v1alpha1.CheckFail {
		t.Errorf("readiness %s", readiness(st))
	}
}
