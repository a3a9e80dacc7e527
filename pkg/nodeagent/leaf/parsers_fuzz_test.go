package leaf

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Seeds come from the captured tool outputs in testdata.
func addSeed(f *testing.F, name string) {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
}

func FuzzParseLLDPNeighbors(f *testing.F) {
	addSeed(f, "lldpcli-json0.json")
	f.Add([]byte(`{"lldp":[{"interface":[]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		neighbors, err := ParseLLDPNeighbors(data)
		if err != nil {
			return
		}
		for _, c := range neighbors {
			_ = c.ID()
		}
	})
}

func FuzzParseNodeInfo(f *testing.F) {
	addSeed(f, "smpquery-nodeinfo-ca.txt")
	addSeed(f, "smpquery-nodeinfo-switch.txt")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseNodeInfo(data)
	})
}

func FuzzStaticFile(f *testing.F) {
	addSeed(f, "static.yaml")
	f.Add([]byte("guids: {\"0x0000:0000:0000:0001\": {leaf: l1}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "static.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s := Static{Path: path}
		if _, err := s.Load(); err != nil {
			return
		}
		nics := []NIC{{Name: "mlx5_0", Device: "mlx5_0", Port: 1, NodeGUID: "0000:0000:0000:0001"}, {Name: "mlx5_1", Device: "mlx5_1", Port: 1}}
		_, _ = s.Lookup(context.Background(), Node{Name: "gpu-0"}, nics)
	})
}

func FuzzNormalizeGUID(f *testing.F) {
	for _, s := range []string{"0x0002c90300a1b2c3", "0002:c903:00a1:b2c3", "0X0002C90300A1B2C3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := NormalizeGUID(s)
		if err != nil {
			return
		}
		again, err := NormalizeGUID(g)
		if err != nil || again != g {
			t.Fatalf("NormalizeGUID(%q) = %q, which normalizes to %q, %v", s, g, again, err)
		}
	})
}

func FuzzNodeLeafFromLabels(f *testing.F) {
	f.Add("topology.k8s.aws/network-node-layer-3", "l1", "topology.k8s.aws/network-node-layer-2", "s1")
	f.Add("fabric.topograph.run/tier-0", "l1", "fabric.topograph.run/tier-1", "s1")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		_, _ = NodeLeafFromLabels(map[string]string{k1: v1, k2: v2})
	})
}
