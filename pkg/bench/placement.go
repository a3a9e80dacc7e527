package bench

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Role is a pod's part in disaggregated serving.
type Role string

const (
	RolePrefill Role = "prefill"
	RoleDecode  Role = "decode"
)

// PathClassUnpaired counts decodes bound while no prefill of their instance is.
const PathClassUnpaired topology.PathClass = "unpaired"

// PathClasses are the classes a report lists, best first.
func PathClasses(levels topology.Levels) []topology.PathClass {
	var out []topology.PathClass
	for i := len(levels) - 1; i >= 0; i-- {
		out = append(out, topology.PathClass(levels[i].Name))
	}
	return append(out, topology.PathHostBounce, topology.PathNone)
}

// Pod is one engine pod of the workload and, once bound, its node.
type Pod struct {
	Name     string `json:"name"`
	Instance string `json:"instance"`
	Role     Role   `json:"role"`
	GPUs     int    `json:"gpus"`
	Node     string `json:"node,omitempty"`
	// Pool: the pod's instance is a pool, whose decodes are priced from
	// their nearest prefill; otherwise from each prefill of the instance.
	Pool bool `json:"pool,omitempty"`
}

// Node is what the analysis needs of a node.
type Node struct {
	Name   string
	Labels map[string]string
	GPUs   int
	// Islands are the sizes of the node's NVLink islands; nil means one
	// island of all its GPUs.
	Islands []int
	// Held is, per island (one entry when Islands is nil), how many of its
	// GPUs pods outside the workload hold before it arrives; nil means none.
	Held []int
}

// FreeIslands is each island's GPUs less those held.
func (n Node) FreeIslands() []int {
	islands := n.Islands
	if len(islands) == 0 {
		islands = []int{n.GPUs}
	}
	free := append([]int(nil), islands...)
	for i := range free {
		if i < len(n.Held) {
			free[i] -= n.Held[i]
		}
	}
	return free
}

// FreeGPUs is the node's GPUs less those held.
func (n Node) FreeGPUs() int {
	total := 0
	for _, f := range n.FreeIslands() {
		total += f
	}
	return total
}

// HeldGPUs is how many of the node's GPUs are held.
func (n Node) HeldGPUs() int {
	total := 0
	for _, h := range n.Held {
		total += h
	}
	return total
}

// NodesOf converts a built cluster, counting its holders' GPUs per island.
func NodesOf(nodes []clusterdesc.Node) []Node {
	out := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		node := Node{Name: n.Node.Name, Labels: n.Node.Labels, GPUs: n.GPUCount()}
		if n.Topology != nil {
			for _, island := range n.Topology.Status.Islands() {
				node.Islands = append(node.Islands, len(island))
			}
		}
		if held := n.Held(); len(held) > 0 {
			islands := n.Islands()
			node.Held = make([]int, max(len(islands), 1))
			for i, island := range islands {
				for _, g := range island {
					if held[g] {
						node.Held[i]++
					}
				}
			}
		}
		out = append(out, node)
	}
	return out
}

// HeldGPUs is how many GPUs of nodes are held before the workload.
func HeldGPUs(nodes []Node) int {
	total := 0
	for _, n := range nodes {
		total += n.HeldGPUs()
	}
	return total
}

// Pair is a decode and one bound prefill of its instance: each of them for
// a replica unit, the nearest for a pool (see Instance.Pairs).
type Pair struct {
	Decode   string `json:"decode"`
	Instance string `json:"instance"`
	Prefill  string `json:"prefill,omitempty"`
	// DecodeNode and PrefillNode are where the two pods run.
	DecodeNode  string             `json:"decodeNode"`
	PrefillNode string             `json:"prefillNode,omitempty"`
	Class       topology.PathClass `json:"class"`
	Transfer    time.Duration      `json:"transferNanos"`
}

// Quality is how good a placement is for KV transfers and for what is left.
type Quality struct {
	Pods    int `json:"pods"`
	Bound   int `json:"bound"`
	Pending int `json:"pending"`
	// Pairs has one entry per bound decode.
	Pairs   []Pair                     `json:"-"`
	Classes map[topology.PathClass]int `json:"classes"`
	// MeanTransfer and P99Transfer are over the paired decodes: the modeled
	// time one request's KV cache takes from prefill to decode.
	MeanTransfer time.Duration `json:"meanTransferNanos"`
	P99Transfer  time.Duration `json:"p99TransferNanos"`
	// FreeGPUs are the GPUs neither the workload nor a holder uses.
	FreeGPUs int `json:"freeGPUs"`
	// StrandedGPUs are free GPUs no engine of the workload's smallest size
	// can use (see Stranded).
	StrandedGPUs int `json:"strandedGPUs"`
}

// Share is the fraction of paired decodes in class c.
func (q Quality) Share(c topology.PathClass) float64 {
	paired := 0
	for class, n := range q.Classes {
		if class != PathClassUnpaired {
			paired += n
		}
	}
	if paired == 0 {
		return 0
	}
	return float64(q.Classes[c]) / float64(paired)
}

// Analyzer prices placements with one cost model and request size.
type Analyzer struct {
	Model   topology.CostModel
	KVBytes float64
	// SmallestEngine is the GPU count stranded GPUs are measured against.
	SmallestEngine int
}

// Class returns the path class between two nodes.
func (a Analyzer) Class(from, to map[string]string) topology.PathClass {
	l := a.Model.Levels
	return l.Classify(l.PathOf(from), l.PathOf(to), topology.GPUDirectRDMAReady(from), topology.GPUDirectRDMAReady(to))
}

// Analyze pairs every bound decode with the bound prefill of its instance
// whose KV transfer is the fastest, and measures what the placement leaves.
func (a Analyzer) Analyze(nodes []Node, pods []Pod) Quality {
	byName := make(map[string]*Node, len(nodes))
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	q := Quality{Pods: len(pods), Classes: map[topology.PathClass]int{}}
	prefills := map[string][]Pod{}
	used := map[string][]int{}
	for _, p := range pods {
		if p.Node == "" {
			q.Pending++
			continue
		}
		q.Bound++
		used[p.Node] = append(used[p.Node], p.GPUs)
		if p.Role == RolePrefill {
			prefills[p.Instance] = append(prefills[p.Instance], p)
		}
	}
	var times []time.Duration
	var total time.Duration
	for _, d := range pods {
		if d.Role != RoleDecode || d.Node == "" {
			continue
		}
		unpaired := Pair{Decode: d.Name, DecodeNode: d.Node, Instance: d.Instance, Class: PathClassUnpaired, Transfer: -1}
		nearest := unpaired
		var pairs []Pair
		for _, p := range prefills[d.Instance] {
			pn, dn := byName[p.Node], byName[d.Node]
			if pn == nil || dn == nil {
				continue
			}
			c := a.Class(pn.Labels, dn.Labels)
			pair := unpaired
			pair.Prefill, pair.PrefillNode, pair.Class, pair.Transfer = p.Name, p.Node, c, a.Model.TransferTime(a.KVBytes, c)
			pairs = append(pairs, pair)
			if nearest.Transfer < 0 || pair.Transfer < nearest.Transfer {
				nearest = pair
			}
		}
		if d.Pool || len(pairs) == 0 {
			pairs = []Pair{nearest}
		}
		for _, pair := range pairs {
			q.Classes[pair.Class]++
			q.Pairs = append(q.Pairs, pair)
			if pair.Transfer >= 0 {
				times = append(times, pair.Transfer)
				total += pair.Transfer
			}
		}
	}
	if len(times) > 0 {
		q.MeanTransfer = total / time.Duration(len(times))
		q.P99Transfer = Percentile(times, 0.99)
	}
	for _, n := range nodes {
		if n.GPUs == 0 {
			continue
		}
		free, stranded := Stranded(n, used[n.Name], a.SmallestEngine)
		q.FreeGPUs += free
		q.StrandedGPUs += stranded
	}
	return q
}

// Percentile is the nearest-rank percentile of ds (p in (0, 1]).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Stranded returns a node's free GPUs and how many of them no engine of
// smallest GPUs can use. Held GPUs are not free. The bound pods' GPUs
// (used, one entry per pod) are assumed taken island by island, each pod in the tightest island that
// holds it, as NVLinkTopo and the NVIDIA device plugin choose them; a pod
// that fits no single island takes GPUs from the fullest islands first.
// Then every island's free GPUs beyond a multiple of smallest are stranded:
// an island with 6 free GPUs strands 2 for TP=4 engines, and a node whose
// islands are smaller than smallest strands all of its free GPUs.
func Stranded(n Node, used []int, smallest int) (free, stranded int) {
	left := n.FreeIslands()
	sorted := append([]int(nil), used...)
	sort.Sort(sort.Reverse(sort.IntSlice(sorted)))
	for _, g := range sorted {
		best := -1
		for i, f := range left {
			if f >= g && (best < 0 || f < left[best]) {
				best = i
			}
		}
		if best >= 0 {
			left[best] -= g
			continue
		}
		for g > 0 {
			fullest := -1
			for i, f := range left {
				if f > 0 && (fullest < 0 || f < left[fullest]) {
					fullest = i
				}
			}
			if fullest < 0 {
				break
			}
			take := min(g, left[fullest])
			left[fullest] -= take
			g -= take
		}
	}
	smallest = max(smallest, 1)
	for _, f := range left {
		free += f
		stranded += f % smallest
	}
	return free, stranded
}

// String renders a duration for a report, in milliseconds.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
