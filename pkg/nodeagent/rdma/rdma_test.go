package rdma_test

import (
	"os"
	"strings"
	"testing"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/rdma"
)

func TestParseState(t *testing.T) {
	for in, want := range map[string]v1alpha1.PortState{
		"4: ACTIVE": v1alpha1.PortActive, "1: DOWN": v1alpha1.PortDown, "2: INIT": v1alpha1.PortInit,
		"3: ARMED": v1alpha1.PortArmed, "5: ACTIVE_DEFER": v1alpha1.PortActiveDefer,
	} {
		if got, err := rdma.ParseState(in); err != nil || got != want {
			t.Errorf("ParseState(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"ACTIVE", "9: WEIRD", ""} {
		if got, err := rdma.ParseState(in); err == nil || got != v1alpha1.PortUnknown {
			t.Errorf("ParseState(%q) = %s, %v; want an error", in, got, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int{
		"400 Gb/sec (4X NDR)": 400, "200 Gb/sec (4X HDR)": 200, "25 Gb/sec (1X EDR)": 25, "2.5 Gb/sec (1X SDR)": 3, "100 Gb/sec": 100,
	} {
		if got, err := rdma.ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"fast", "400 Mb/sec", "-1 Gb/sec", "NaN Gb/sec", ""} {
		if _, err := rdma.ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) succeeded", in)
		}
	}
}

func TestDiscover(t *testing.T) {
	m, err := fixtures.Build(t.TempDir(), fixtures.PCIeServer())
	if err != nil {
		t.Fatal(err)
	}
	ports, err := rdma.Discover(m.SysRoot)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 {
		t.Fatalf("%d ports, want 2", len(ports))
	}
	want := rdma.Port{Name: "mlx5_1", Device: "mlx5_1", Port: 1, PCIBusID: "0000:24:00.0", NetDev: "ens2f0np0",
		LinkLayer: v1alpha1.LinkLayerRoCE, State: v1alpha1.PortActive, PhysState: "LinkUp", RateGbps: 200, NUMANode: 0, NodeGUID: "5c25:7303:00e4:1001", Driver: "mlx5_core"}
	if ports[1] != want {
		t.Errorf("port = %+v\nwant   %+v", ports[1], want)
	}
}

// Malformed and missing files are named; the rest of the port is read.
func TestDiscoverBadFiles(t *testing.T) {
	m, err := fixtures.Build(t.TempDir(), fixtures.PCIeServer())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.PortFile("mlx5_0", "link_layer"), []byte("Token Ring\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.PortFile("mlx5_1", "state")); err != nil {
		t.Fatal(err)
	}
	ports, err := rdma.Discover(m.SysRoot)
	if err == nil || !strings.Contains(err.Error(), m.PortFile("mlx5_0", "link_layer")) || !strings.Contains(err.Error(), m.PortFile("mlx5_1", "state")) {
		t.Fatalf("error %v does not name both files", err)
	}
	if len(ports) != 2 || ports[0].State != v1alpha1.PortActive || ports[0].LinkLayer != "" || ports[1].State != v1alpha1.PortUnknown || ports[1].RateGbps != 200 {
		t.Errorf("ports = %+v", ports)
	}
}

func TestDiscoverNoRDMA(t *testing.T) {
	ports, err := rdma.Discover(t.TempDir())
	if err != nil || len(ports) != 0 {
		t.Errorf("Discover on a node without RDMA = %v, %v", ports, err)
	}
}

func TestParseVPDKeyword(t *testing.T) {
	// Identifier "CX8", a VPD-W section holding a V3 that must not count,
	// then VPD-R with SN and V3, then the end tag.
	vpd := []byte{0x82, 0x03, 0x00, 'C', 'X', '8',
		0x91, 0x05, 0x00, 'V', '3', 0x02, 'n', 'o',
		0x90, 0x0e, 0x00, 'S', 'N', 0x02, 'M', 'T', 'V', '3', 0x06, '5', 'e', '0', 'c', ' ', ' ',
		0x78}
	if v, ok, err := rdma.ParseVPDKeyword(vpd, "V3"); v != "5e0c" || !ok || err != nil {
		t.Errorf("V3 = %q, %v, %v", v, ok, err)
	}
	if v, ok, err := rdma.ParseVPDKeyword(vpd, "PN"); v != "" || ok || err != nil {
		t.Errorf("PN = %q, %v, %v", v, ok, err)
	}
	for _, bad := range [][]byte{
		{0x82, 0x10, 0x00, 'C'},
		{0x90, 0x04, 0x00, 'V', '3', 0x09, 'x'},
		{0x82},
	} {
		if _, _, err := rdma.ParseVPDKeyword(bad, "V3"); err == nil {
			t.Errorf("ParseVPDKeyword(%x): no error", bad)
		}
	}
}
