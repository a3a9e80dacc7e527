package nodeagent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
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
