package bench

import (
	"math"
	"strings"
	"time"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// PairBound is the cheapest path one instance's prefill→decode pair could
// take on the cluster as it is before the workload arrives.
type PairBound struct {
	// Class is the best path class at which some node pair could hold one
	// prefill and one decode of the instance; empty when none could.
	Class    topology.PathClass `json:"class,omitempty"`
	Transfer time.Duration      `json:"transferNanos"`
	// Feasible is false when no node pair holds a prefill and a decode of
	// the instance at all: no placement can pair its decodes.
	Feasible bool `json:"feasible"`
}

// Bound is a lower bound on the modeled KV-transfer time of every
// prefill→decode pair (Instance.Pairs), from a relaxation: each pair on its
// own, on the cluster's GPUs free before the workload (held GPUs
// removed), counted per node (NVLink islands ignored, as kube-scheduler's
// NodeResourcesFit ignores them), and without the other pods of its own or
// any other instance. Every real placement puts each paired decode and its
// prefill on two nodes (or one) that had room for them at the start, so no
// pair can be faster than its instance's PairBound, whatever the scheduler.
type Bound struct {
	Instances map[string]PairBound `json:"instances"`
	// Mean is over every pair of the workload whose instance is feasible;
	// NVLinkShare is the share of those whose bound class is NVLink.
	Mean        time.Duration `json:"meanTransferNanos"`
	NVLinkShare float64       `json:"nvlinkShare"`
	Pairs       int           `json:"pairs"`
	// Infeasible counts pairs whose instance no node pair can hold.
	Infeasible int `json:"infeasiblePairs"`
}

// BoundOver is the bound restricted to the pairs one placement made.
type BoundOver struct {
	// Mean is a lower bound on that placement's mean KV transfer, and
	// NVLinkShare an upper bound on its share of NVLink pairs.
	Mean        time.Duration `json:"meanTransferNanos"`
	NVLinkShare float64       `json:"nvlinkShare"`
	Pairs       int           `json:"pairs"`
}

// IsNVLink reports whether c is the NVLink-domain class or a finer level.
func (a Analyzer) IsNVLink(c topology.PathClass) bool {
	nv, ok := a.Model.Levels.Index(topology.LevelNVLinkDomain)
	i, isLevel := a.Model.Levels.Index(string(c))
	return ok && isLevel && i >= nv
}

// NVLinkShare is the share of a placement's paired decodes on NVLink.
func (a Analyzer) NVLinkShare(q Quality) float64 {
	paired, nvlink := 0, 0
	for c, n := range q.Classes {
		if c == PathClassUnpaired {
			continue
		}
		paired += n
		if a.IsNVLink(c) {
			nvlink += n
		}
	}
	if paired == 0 {
		return 0
	}
	return float64(nvlink) / float64(paired)
}

// nodeKind is the nodes that classify alike: same domain path and GPUDirect
// state. top are the two largest free GPU counts among them.
type nodeKind struct {
	labels map[string]string
	path   topology.DomainPath
	ready  bool
	top    [2]int
}

type pairShape struct{ prefill, decode int }

// Bound computes the bound of every instance on nodes.
func (a Analyzer) Bound(nodes []Node, instances []Instance) Bound {
	levels := a.Model.Levels
	byKey := map[string]*nodeKind{}
	var kinds []*nodeKind
	for _, n := range nodes {
		free := n.FreeGPUs()
		if free <= 0 {
			continue
		}
		path := levels.PathOf(n.Labels)
		ready := topology.GPUDirectRDMAReady(n.Labels)
		key := strings.Join(path, "\x00")
		if ready {
			key += "\x00ready"
		}
		k := byKey[key]
		if k == nil {
			k = &nodeKind{labels: n.Labels, path: path, ready: ready}
			byKey[key] = k
			kinds = append(kinds, k)
		}
		switch {
		case free > k.top[0]:
			k.top[1], k.top[0] = k.top[0], free
		case free > k.top[1]:
			k.top[1] = free
		}
	}

	var shapes []pairShape
	index := map[pairShape]int{}
	for _, in := range instances {
		s := pairShape{in.Unit.Prefill.GPUs, in.Unit.Decode.GPUs}
		if _, ok := index[s]; !ok {
			index[s] = len(shapes)
			shapes = append(shapes, s)
		}
	}
	best := make([]PairBound, len(shapes))
	floor := a.cheapestTransfer()
	found := 0 // shapes already at the cheapest transfer the model has
	for i := 0; i < len(kinds) && found < len(shapes); i++ {
		for j := i; j < len(kinds) && found < len(shapes); j++ {
			ki, kj := kinds[i], kinds[j]
			c := levels.Classify(ki.path, kj.path, ki.ready, kj.ready)
			t := a.Model.TransferTime(a.KVBytes, c)
			for s, shape := range shapes {
				if best[s].Feasible && best[s].Transfer <= t {
					continue
				}
				if !holdsPair(ki, kj, i == j, shape) {
					continue
				}
				best[s] = PairBound{Class: c, Transfer: t, Feasible: true}
				if t <= floor {
					found++
				}
			}
		}
	}

	b := Bound{Instances: map[string]PairBound{}}
	var total time.Duration
	nvlink := 0
	for _, in := range instances {
		pb := best[index[pairShape{in.Unit.Prefill.GPUs, in.Unit.Decode.GPUs}]]
		b.Instances[in.Name] = pb
		pairs := in.Pairs()
		if !pb.Feasible {
			b.Infeasible += pairs
			continue
		}
		b.Pairs += pairs
		total += time.Duration(pairs) * pb.Transfer
		if a.IsNVLink(pb.Class) {
			nvlink += pairs
		}
	}
	if b.Pairs > 0 {
		b.Mean = total / time.Duration(b.Pairs)
		b.NVLinkShare = float64(nvlink) / float64(b.Pairs)
	}
	return b
}

// Over restricts the bound to the decodes q paired with a prefill.
func (b Bound) Over(a Analyzer, q Quality) BoundOver {
	var out BoundOver
	var total time.Duration
	nvlink := 0
	for _, p := range q.Pairs {
		if p.Transfer < 0 {
			continue
		}
		pb, ok := b.Instances[p.Instance]
		if !ok || !pb.Feasible {
			// Cannot happen for a placement on the same cluster: the pair
			// itself shows a node pair that holds it.
			continue
		}
		out.Pairs++
		total += pb.Transfer
		if a.IsNVLink(pb.Class) {
			nvlink++
		}
	}
	if out.Pairs > 0 {
		out.Mean = total / time.Duration(out.Pairs)
		out.NVLinkShare = float64(nvlink) / float64(out.Pairs)
	}
	return out
}

// holdsPair reports whether a prefill and a decode of shape fit on a node of
// kind a and a node of kind b (the same kind when same): on two different
// nodes, or both on one node.
func holdsPair(a, b *nodeKind, same bool, s pairShape) bool {
	if !same {
		return a.top[0] >= s.prefill && b.top[0] >= s.decode || a.top[0] >= s.decode && b.top[0] >= s.prefill
	}
	return a.top[0] >= s.prefill+s.decode ||
		a.top[0] >= max(s.prefill, s.decode) && a.top[1] >= min(s.prefill, s.decode)
}

// cheapestTransfer is the fastest transfer any path class of the model
// allows.
func (a Analyzer) cheapestTransfer() time.Duration {
	best := time.Duration(math.MaxInt64)
	for _, c := range PathClasses(a.Model.Levels) {
		best = min(best, a.Model.TransferTime(a.KVBytes, c))
	}
	return best
}
