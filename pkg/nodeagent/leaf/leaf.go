// Package leaf finds the leaf switch each NIC port is cabled to, from
// pluggable sources tried in priority order, and derives the node's leaf and
// spine from them. A node whose NICs reach several leaves with none holding a
// majority of them (each NIC on its own rail leaf, as on a rail-optimised
// fabric) has no node leaf; see NodeLeaf.
package leaf

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/klog/v2"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

// NIC is what a source needs to know about a NIC port.
type NIC struct {
	Name      string
	Device    string
	Port      int
	NetDev    string
	NodeGUID  string
	LinkLayer v1alpha1.LinkLayer
}

// Node is the node the agent runs on.
type Node struct {
	Name   string
	Labels map[string]string
}

// Result is what a source knows about one NIC's place in the fabric.
type Result struct {
	Leaf string
	// Spine is empty when the source does not know it.
	Spine  string
	Source v1alpha1.LeafSource
}

// Source finds leaf switches.
type Source interface {
	Name() v1alpha1.LeafSource
	// Lookup returns results for the NICs it knows, keyed by NIC name. An
	// error may come with partial results.
	Lookup(ctx context.Context, node Node, nics []NIC) (map[string]Result, error)
}

// Fabric is the node's place in the network fabric.
type Fabric struct {
	// PerNIC is each NIC's leaf, from the first source that knew it.
	PerNIC map[string]Result
	// Leaf is the node's leaf, as NodeLeaf chooses it: the leaf that holds a
	// strict majority of the node's NICs, or the only leaf any NIC is known
	// to reach. It is empty when no NIC's leaf is known and when the NICs
	// reach several leaves with none holding a majority (MultiRail).
	Leaf string
	// Leaves is the number of distinct leaves the NICs are known to reach.
	Leaves int
	// Spine is the spine the first source that reported one gave.
	Spine string
}

// Resolve asks the sources in order; for each NIC the first source that
// knows its leaf wins. Source errors are joined and returned with whatever
// the other sources found.
func Resolve(ctx context.Context, sources []Source, node Node, nics []NIC) (Fabric, error) {
	logger := klog.FromContext(ctx)
	f := Fabric{PerNIC: map[string]Result{}}
	var errs []error
	for _, src := range sources {
		var missing []NIC
		for _, n := range nics {
			if _, ok := f.PerNIC[n.Name]; !ok {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 && len(nics) > 0 && f.Spine != "" {
			break
		}
		got, err := src.Lookup(ctx, node, missing)
		if err != nil {
			logger.V(2).Info("Leaf source failed", "source", src.Name(), "err", err)
			errs = append(errs, fmt.Errorf("leaf source %s: %w", src.Name(), err))
		}
		for _, n := range missing {
			r, ok := got[n.Name]
			if !ok || r.Leaf == "" {
				continue
			}
			r.Source = src.Name()
			f.PerNIC[n.Name] = r
		}
		if f.Spine == "" {
			for _, r := range got {
				if r.Spine != "" && (f.Spine == "" || r.Spine < f.Spine) {
					f.Spine = r.Spine
				}
			}
		}
	}
	f.Leaf, f.Leaves = NodeLeaf(f.PerNIC, len(nics))
	return f, errors.Join(errs...)
}

// MultiRail says the node's NICs reach several leaves with none holding a
// strict majority of them, so the node has no leaf of its own.
func (f Fabric) MultiRail() bool { return f.Leaf == "" && f.Leaves > 1 }

// NodeLeaf chooses the node's leaf from its NICs' leaves. nics is the number
// of NICs considered, including those whose leaf no source knew (per holds
// only the known ones): an unknown NIC is a vote for no leaf. The node's leaf
// is
//
//   - the leaf holding a strict majority of the nics (all NICs on one leaf,
//     or seven of eight with the eighth unknown), else
//   - the only leaf any NIC is known to reach, however few NICs are known:
//     nothing says the node spans several leaves, else
//   - none: the known NICs reach several leaves and none holds a majority.
//     That is a node of a rail-optimised fabric, whose NICs sit on one rail
//     leaf each; picking one rail would be an accident of naming that changes
//     when one rail's leaf is unknown, so two nodes of one scalable unit
//     would differ.
//
// leaves is the number of distinct leaves known.
func NodeLeaf(per map[string]Result, nics int) (leaf string, leaves int) {
	counts := map[string]int{}
	known := 0
	for _, r := range per {
		if r.Leaf != "" {
			counts[r.Leaf]++
			known++
		}
	}
	// At most one leaf can hold a strict majority, so the choice does not
	// depend on map order.
	nics = max(nics, known)
	for l, c := range counts {
		if len(counts) == 1 || 2*c > nics {
			leaf = l
		}
	}
	return leaf, len(counts)
}

// ParseSources builds the sources named in order ("static", "label", "lldp",
// "infiniband") from the given builders; an unknown or repeated name is an
// error.
func ParseSources(names []string, build map[v1alpha1.LeafSource]func() (Source, error)) ([]Source, error) {
	var (
		out  []Source
		seen []string
	)
	for _, raw := range names {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		if slices.Contains(seen, name) {
			return nil, fmt.Errorf("leaf source %q listed twice", name)
		}
		seen = append(seen, name)
		b, ok := build[v1alpha1.LeafSource(name)]
		if !ok {
			return nil, fmt.Errorf("unknown leaf source %q (known: static, label, lldp, infiniband)", name)
		}
		src, err := b()
		if err != nil {
			return nil, fmt.Errorf("leaf source %s: %w", name, err)
		}
		if src != nil {
			out = append(out, src)
		}
	}
	return out, nil
}
