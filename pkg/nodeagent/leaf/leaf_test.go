package leaf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseLLDPNeighbors(t *testing.T) {
	got, err := ParseLLDPNeighbors(golden(t, "lldpcli-json0.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Chassis{
		"ens1f0np0": {ChassisID: "b8:59:9f:a1:22:00", SysName: "rack12-leaf-a.dc1"},
		"ens2f0np0": {ChassisID: "b8:59:9f:a1:33:00"},
		"eno1":      {ChassisID: "00:1c:73:aa:bb:cc", SysName: "oob-mgmt-sw-3"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d interfaces, want %d: %+v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %+v, want %+v", k, got[k], v)
		}
	}
	if _, err := ParseLLDPNeighbors([]byte(`{"lldp": [{"interface": `)); err == nil || !strings.Contains(err.Error(), "lldpcli -f json0 show neighbors") {
		t.Errorf("truncated output: %v", err)
	}
	if got, err := ParseLLDPNeighbors([]byte(`{"lldp": [{}]}`)); err != nil || len(got) != 0 {
		t.Errorf("no neighbours: %v, %v", got, err)
	}
}

func TestLLDPSource(t *testing.T) {
	run := runner.NewFake()
	run.Set(runner.CommandLine(LLDPCommand[0], LLDPCommand[1:]...), golden(t, "lldpcli-json0.json"), nil)
	nics := []NIC{
		{Name: "mlx5_0", NetDev: "ens1f0np0", LinkLayer: v1alpha1.LinkLayerRoCE},
		{Name: "mlx5_1", NetDev: "ens2f0np0", LinkLayer: v1alpha1.LinkLayerRoCE},
		{Name: "mlx5_2", NetDev: "ens3f0np0", LinkLayer: v1alpha1.LinkLayerRoCE},
	}
	got, err := LLDP{Runner: run}.Lookup(context.Background(), Node{}, nics)
	if err != nil {
		t.Fatal(err)
	}
	if got["mlx5_0"].Leaf != "rack12-leaf-a.dc1" || got["mlx5_1"].Leaf != "b8:59:9f:a1:33:00" || len(got) != 2 {
		t.Errorf("results = %+v", got)
	}
	// IB ports are not LLDP's business: no command runs.
	run2 := runner.NewFake()
	if got, err := (LLDP{Runner: run2}).Lookup(context.Background(), Node{}, []NIC{{Name: "mlx5_0", NetDev: "ib0", LinkLayer: v1alpha1.LinkLayerInfiniBand}}); err != nil || len(got) != 0 || len(run2.Calls()) != 0 {
		t.Errorf("IB-only lookup = %v, %v, calls %v", got, err, run2.Calls())
	}
}

func TestParseNodeInfo(t *testing.T) {
	info, err := ParseNodeInfo(golden(t, "smpquery-nodeinfo-switch.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if info != (NodeInfo{NodeType: "Switch", GUID: "0xfc6a1c0300e4f100", SystemGUID: "0xfc6a1c0300e4f100", LocalPort: 17}) {
		t.Errorf("node info = %+v", info)
	}
	for _, bad := range []string{"", "NodeType:....Switch\n", "NodeType:....Switch\nGuid:....0xzz\n", "NodeType:...Switch\nGuid:...0xfc6a1c0300e4f100\nLocalPort:....x\n"} {
		if _, err := ParseNodeInfo([]byte(bad)); err == nil {
			t.Errorf("ParseNodeInfo(%q) succeeded", bad)
		}
	}
}

func TestInfiniBandSource(t *testing.T) {
	run := runner.NewFake()
	a := SMPQueryArgs("mlx5_0", 1)
	run.Set(runner.CommandLine(a[0], a[1:]...), golden(t, "smpquery-nodeinfo-switch.txt"), nil)
	b := SMPQueryArgs("mlx5_1", 1)
	run.Set(runner.CommandLine(b[0], b[1:]...), golden(t, "smpquery-nodeinfo-ca.txt"), nil)
	nics := []NIC{
		{Name: "mlx5_0", Device: "mlx5_0", Port: 1, LinkLayer: v1alpha1.LinkLayerInfiniBand},
		{Name: "mlx5_1", Device: "mlx5_1", Port: 1, LinkLayer: v1alpha1.LinkLayerInfiniBand},
		{Name: "mlx5_2", Device: "mlx5_2", Port: 1, LinkLayer: v1alpha1.LinkLayerInfiniBand},
		{Name: "mlx5_3", Device: "mlx5_3", Port: 1, LinkLayer: v1alpha1.LinkLayerRoCE},
	}
	got, err := InfiniBand{Runner: run}.Lookup(context.Background(), Node{}, nics)
	if got["mlx5_0"].Leaf != "0xfc6a1c0300e4f100" || len(got) != 1 {
		t.Errorf("results = %+v", got)
	}
	// mlx5_1 is cabled back to back to another HCA; mlx5_2 has no smpquery.
	if err == nil || !strings.Contains(err.Error(), "not a switch") || !strings.Contains(err.Error(), "smpquery -C mlx5_2 -P 1 -D nodeinfo 0,1") {
		t.Errorf("error = %v", err)
	}
	if calls := run.Calls(); len(calls) != 3 {
		t.Errorf("calls = %v, want one per IB port", calls)
	}
}

func TestStaticSource(t *testing.T) {
	s := Static{Path: filepath.Join("testdata", "static.yaml")}
	nics := []NIC{
		{Name: "mlx5_0", NodeGUID: "a088:c203:0011:2200"},
		{Name: "mlx5_3", NodeGUID: "a088:c203:0011:2203"},
		{Name: "mlx5_7", NodeGUID: "a088:c203:0011:2207"},
	}
	got, err := s.Lookup(context.Background(), Node{Name: "hgx-h100-0"}, nics)
	if err != nil {
		t.Fatal(err)
	}
	if got["mlx5_0"] != (Result{Leaf: "leaf-a1", Spine: "spine-1"}) || got["mlx5_3"] != (Result{Leaf: "leaf-b9", Spine: "spine-2"}) || got["mlx5_7"].Leaf != "leaf-a2" {
		t.Errorf("results = %+v", got)
	}
	if got, err := s.Lookup(context.Background(), Node{Name: "other"}, nics[:1]); err != nil || len(got) != 0 {
		t.Errorf("unknown host = %v, %v", got, err)
	}

	dir := t.TempDir()
	for name, content := range map[string]string{
		"typo.yaml":    "hosts:\n  a:\n    leef: x\n",
		"badguid.yaml": "guids:\n  \"12:34\": {leaf: x}\n",
		"noleaf.yaml":  "guids:\n  \"0xa088c20300112203\": {spine: y}\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := (Static{Path: path}).Lookup(context.Background(), Node{Name: "a"}, nics); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v does not name the file", name, err)
		}
	}
	if _, err := (Static{Path: filepath.Join(dir, "missing.yaml")}).Load(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestNodeLeafFromLabels(t *testing.T) {
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		leaf, spine string
	}{
		{"topograph", map[string]string{"network.topology.nvidia.com/tier-0": "sw-leaf-3", "network.topology.nvidia.com/tier-1": "sw-spine-1"}, "sw-leaf-3", "sw-spine-1"},
		{"gke", map[string]string{"cloud.google.com/gce-topology-subblock": "sb-7", "cloud.google.com/gce-topology-block": "b-2"}, "sb-7", "b-2"},
		{"eks three layers", map[string]string{EKSLayerPrefix + "1": "nn-top", EKSLayerPrefix + "2": "nn-mid", EKSLayerPrefix + "3": "nn-leaf"}, "nn-leaf", "nn-mid"},
		{"eks four layers", map[string]string{EKSLayerPrefix + "1": "a", EKSLayerPrefix + "2": "b", EKSLayerPrefix + "3": "c", EKSLayerPrefix + "4": "d"}, "d", "c"},
		{"ignores tandem's own labels", map[string]string{"tandem.dev/leaf": "x", "tandem.dev/spine": "y"}, "", ""},
		{"none", nil, "", ""},
	} {
		leaf, spine := NodeLeafFromLabels(tc.labels)
		if leaf != tc.leaf || spine != tc.spine {
			t.Errorf("%s: leaf %q spine %q, want %q %q", tc.name, leaf, spine, tc.leaf, tc.spine)
		}
	}
}

type fakeSource struct {
	name v1alpha1.LeafSource
	res  map[string]Result
	err  error
	seen [][]string
}

func (f *fakeSource) Name() v1alpha1.LeafSource { return f.name }
func (f *fakeSource) Lookup(_ context.Context, _ Node, nics []NIC) (map[string]Result, error) {
	var names []string
	for _, n := range nics {
		names = append(names, n.Name)
	}
	f.seen = append(f.seen, names)
	return f.res, f.err
}

func TestResolvePriorityAndMajority(t *testing.T) {
	static := &fakeSource{name: v1alpha1.LeafSourceStatic, res: map[string]Result{"a": {Leaf: "L1"}}}
	broken := &fakeSource{name: v1alpha1.LeafSourceInfiniBand, err: errors.New("umad: permission denied")}
	lldp := &fakeSource{name: v1alpha1.LeafSourceLLDP, res: map[string]Result{"a": {Leaf: "ignored"}, "b": {Leaf: "L2"}, "c": {Leaf: "L2"}, "e": {Leaf: "L2"}}}
	// L2 holds three of the five NICs, a strict majority.
	f, err := Resolve(context.Background(), []Source{static, broken, lldp}, Node{}, []NIC{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}})
	if err == nil || !strings.Contains(err.Error(), "leaf source infiniband: umad") {
		t.Errorf("error = %v", err)
	}
	if f.PerNIC["a"] != (Result{Leaf: "L1", Source: "static"}) || f.PerNIC["b"].Source != "lldp" || f.Leaf != "L2" {
		t.Errorf("fabric = %+v", f)
	}
	if got := strings.Join(lldp.seen[0], ","); got != "b,c,d,e" {
		t.Errorf("lldp asked about %s, want only the NICs still unknown", got)
	}
	if _, ok := f.PerNIC["d"]; ok {
		t.Error("NIC d got a leaf no source gave")
	}
}

func TestParseSources(t *testing.T) {
	build := map[v1alpha1.LeafSource]func() (Source, error){
		"label": func() (Source, error) { return Labels{}, nil },
		"lldp":  func() (Source, error) { return LLDP{}, nil },
	}
	got, err := ParseSources([]string{"lldp", " label"}, build)
	if err != nil || len(got) != 2 || got[0].Name() != "lldp" {
		t.Errorf("ParseSources = %v, %v", got, err)
	}
	if _, err := ParseSources([]string{"lldp", "lldp"}, build); err == nil {
		t.Error("repeated source accepted")
	}
	if _, err := ParseSources([]string{"snmp"}, build); err == nil || !strings.Contains(err.Error(), `"snmp"`) {
		t.Errorf("unknown source: %v", err)
	}
}

// nicsOnLeaves returns NICs mlx5_0, mlx5_1, … and a source that knows NIC i on
// leaves[i]; an empty leaf is a NIC no source knows.
func nicsOnLeaves(leaves ...string) ([]NIC, *fakeSource) {
	src := &fakeSource{name: v1alpha1.LeafSourceLLDP, res: map[string]Result{}}
	var nics []NIC
	for i, l := range leaves {
		name := fmt.Sprintf("mlx5_%d", i)
		nics = append(nics, NIC{Name: name})
		if l != "" {
			src.res[name] = Result{Leaf: l}
		}
	}
	return nics, src
}

// rails is the eight rail leaves of one scalable unit, with rail i's leaf
// unknown when unknown is i (-1: all known).
func rails(unknown int) []string {
	var out []string
	for i := range 8 {
		if i == unknown {
			out = append(out, "")
		} else {
			out = append(out, fmt.Sprintf("su1-rail%d", i))
		}
	}
	return out
}

func TestResolveNodeLeaf(t *testing.T) {
	type tc struct {
		name   string
		leaves []string
		leaf   string
		known  int
	}
	tests := []tc{
		{"all NICs on one leaf", []string{"L1", "L1", "L1", "L1", "L1", "L1", "L1", "L1"}, "L1", 1},
		{"eight rails, all known", rails(-1), "", 8},
		{"seven of eight on one leaf, one unknown", []string{"L1", "L1", "L1", "", "L1", "L1", "L1", "L1"}, "L1", 1},
		{"four and four on two leaves", []string{"L1", "L1", "L1", "L1", "L2", "L2", "L2", "L2"}, "", 2},
		{"five and three on two leaves", []string{"L2", "L2", "L2", "L1", "L1", "L1", "L1", "L1"}, "L1", 2},
		// Four of eight is no strict majority: an unknown NIC votes for no leaf.
		{"four on one leaf, one on another, three unknown", []string{"L1", "L1", "L1", "L1", "L2", "", "", ""}, "", 2},
		// Nothing says the node spans several leaves.
		{"one NIC known of eight", []string{"", "", "", "", "", "L1", "", ""}, "L1", 1},
		{"three of eight known, all on one leaf", []string{"L1", "", "", "L1", "", "", "L1", ""}, "L1", 1},
		// Storage ports sharing a leaf do not make it the node's leaf.
		{"eight rails and two storage ports on one leaf", append(rails(-1), "storage-1", "storage-1"), "", 9},
		{"a single NIC", []string{"L1"}, "L1", 1},
		{"a single NIC, unknown", []string{""}, "", 0},
		{"no NICs", nil, "", 0},
		{"no NIC known", []string{"", "", "", ""}, "", 0},
	}
	// Whichever rail is unknown, the node is the same: several leaves, no
	// node leaf.
	for i := range 8 {
		tests = append(tests, tc{fmt.Sprintf("eight rails, rail %d unknown", i), rails(i), "", 7})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nics, src := nicsOnLeaves(tt.leaves...)
			f, err := Resolve(context.Background(), []Source{src}, Node{}, nics)
			if err != nil {
				t.Fatal(err)
			}
			if f.Leaf != tt.leaf || f.Leaves != tt.known {
				t.Errorf("leaf %q from %d known leaves, want %q from %d", f.Leaf, f.Leaves, tt.leaf, tt.known)
			}
			if want := tt.leaf == "" && tt.known > 1; f.MultiRail() != want {
				t.Errorf("MultiRail() = %v, want %v", f.MultiRail(), want)
			}
		})
	}
}

// The choice does not depend on map order or on how many NICs the caller
// says there are when it says too few.
func TestNodeLeafDeterministic(t *testing.T) {
	per := map[string]Result{"a": {Leaf: "L1"}, "b": {Leaf: "L2"}, "c": {Leaf: "L2"}, "d": {Leaf: "L3"}}
	for range 100 {
		if leaf, n := NodeLeaf(per, 4); leaf != "" || n != 3 {
			t.Fatalf("NodeLeaf = %q, %d; want no leaf of 3", leaf, n)
		}
		if leaf, _ := NodeLeaf(per, 0); leaf != "" {
			t.Fatalf("NodeLeaf with a short count = %q, want no leaf", leaf)
		}
	}
	if leaf, n := NodeLeaf(map[string]Result{"a": {Leaf: "L1"}, "b": {Spine: "S1"}}, 2); leaf != "L1" || n != 1 {
		t.Errorf("a result without a leaf counted: %q, %d", leaf, n)
	}
}
