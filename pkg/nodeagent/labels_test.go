package nodeagent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/rdma"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// leafSource knows NIC mlx5_i on leaves[i]; an empty leaf is a NIC it does
// not know. It can be changed between syncs.
type leafSource struct{ leaves []string }

func (s *leafSource) Name() v1alpha1.LeafSource { return v1alpha1.LeafSourceLLDP }
func (s *leafSource) Lookup(_ context.Context, _ leaf.Node, nics []leaf.NIC) (map[string]leaf.Result, error) {
	out := map[string]leaf.Result{}
	for i, l := range s.leaves {
		if l != "" {
			out[fmt.Sprintf("mlx5_%d", i)] = leaf.Result{Leaf: l}
		}
	}
	return out, nil
}

// railLeaves is one scalable unit's eight rail leaves, rail i on
// su1-rail<i>, with rail unknown's leaf not known (-1: all known).
func railLeaves(unknown int) []string {
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

func repeat(leaf string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = leaf
	}
	return out
}

// discoverLeaves runs the agent's leaf resolution over NICs mlx5_0, … with
// the given leaves.
func discoverLeaves(leaves []string) *Discovery {
	d := &Discovery{}
	for i := range leaves {
		d.NICs = append(d.NICs, NIC{Port: rdma.Port{Name: fmt.Sprintf("mlx5_%d", i)}, Rail: i})
	}
	(&Discoverer{LeafSources: []leaf.Source{&leafSource{leaves: leaves}}}).resolveLeaves(context.Background(), leaf.Node{Name: "n"}, d)
	return d
}

// The node's leaf, as the NodeTopology and the tandem.dev/leaf label publish
// it, and the LeafDiscovered condition that says why it is what it is.
func TestNodeLeafPublished(t *testing.T) {
	type tc struct {
		name      string
		leaves    []string
		leaf      string
		condition string
		message   string
	}
	tests := []tc{
		{"all NICs on one leaf", repeat("leaf-07", 8), "leaf-07", "True/LeafFound", "leaf leaf-07 for 8 NICs"},
		{"eight rails, all known", railLeaves(-1), "", "True/MultiRail", "8 NICs reach 8 leaves"},
		{"seven of eight on one leaf, one unknown", append(repeat("leaf-07", 7), ""), "leaf-07", "False/SomeLeavesUnknown", "no leaf for mlx5_7"},
		{"four and four on two leaves", append(repeat("leaf-07", 4), repeat("leaf-08", 4)...), "", "True/MultiRail", "8 NICs reach 2 leaves"},
		{"five and three on two leaves", append(repeat("leaf-08", 3), repeat("leaf-07", 5)...), "leaf-07", "True/LeafFound", "leaf leaf-07 for 5 of 8 NICs"},
		{"a single NIC", []string{"leaf-07"}, "leaf-07", "True/LeafFound", "leaf leaf-07 for the one NIC"},
		{"no NICs", nil, "", "False/NoNICs", "no RDMA NIC"},
	}
	for i := range 8 {
		tests = append(tests, tc{fmt.Sprintf("eight rails, rail %d unknown", i), railLeaves(i), "", "False/MultiRail", fmt.Sprintf("8 NICs reach 7 leaves and none holds a majority of them, as on a rail-optimised fabric: the node has no single leaf, so none is published; no leaf for mlx5_%d", i)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := discoverLeaves(tt.leaves)
			labels := d.NodeLabels()
			if v, ok := labels[topology.LabelLeaf]; !ok || v != tt.leaf {
				t.Errorf("leaf label %q (present in the map: %v), want %q; empty means absent", v, ok, tt.leaf)
			}
			st := d.Status(nil, time.Unix(1000, 0))
			if st.Leaf != tt.leaf {
				t.Errorf(".status.leaf = %q, want %q", st.Leaf, tt.leaf)
			}
			var msg string
			for _, c := range st.Conditions {
				if c.Type == ConditionLeafDiscovered {
					msg = c.Message
				}
			}
			if got := conditionOf(st, ConditionLeafDiscovered); got != tt.condition || !strings.Contains(msg, tt.message) {
				t.Errorf("LeafDiscovered = %s %q, want %s containing %q", got, msg, tt.condition, tt.message)
			}
			// Each NIC's leaf and rail are published whatever the node's.
			for i, n := range st.NICs {
				if n.Leaf != tt.leaves[i] || n.Rail != int32(i) {
					t.Errorf("NIC %s: leaf %q rail %d, want %q %d", n.Name, n.Leaf, n.Rail, tt.leaves[i], i)
				}
			}
		})
	}
}
