package bench

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Limits of the exact search: above them the optimum is skipped.
const (
	MaxOptimumNodes     = 16
	MaxOptimumInstances = 8
	// DefaultOptimumBudget is how many search nodes the search may expand
	// before it gives up proving optimality and reports its best.
	DefaultOptimumBudget = 20_000_000
)

// Optimum is the best offline placement of a workload: the fewest GPUs left
// out (instances are placed whole), then the least total modeled KV-transfer time over all
// prefill→decode pairs (Instance.Pairs: every pair of a replica unit, each
// decode of a pool with its nearest prefill).
type Optimum struct {
	// Unplaced is the number of instances the best placement leaves out,
	// and UnplacedGPUs what they ask for.
	Unplaced     int `json:"unplacedInstances"`
	UnplacedGPUs int `json:"unplacedGPUs"`
	Pairs        int `json:"pairs"`
	// Total is the summed transfer time of the placed instances' pairs.
	Total time.Duration `json:"totalTransferNanos"`
	Mean  time.Duration `json:"meanTransferNanos"`
	// Proven is false when the search ran out of budget: Total is then only
	// the best placement found.
	Proven     bool  `json:"proven"`
	Expansions int   `json:"expansions"`
	Pods       []Pod `json:"pods"`
}

// Optimum finds the best placement of instances on nodes by branch and
// bound. Every instance is placed whole or not at all (replica mode
// semantics; a pool is treated as one instance). A pod needs its GPUs on one
// NVLink island of a node (the tightest that fits is used), as NVLinkTopo's
// islandPolicy Required demands, among the GPUs not held before the
// workload. Nodes without GPUs are ignored. It refuses
// instances above MaxOptimumNodes GPU nodes or MaxOptimumInstances instances.
func (a Analyzer) Optimum(nodes []Node, instances []Instance, budget int) (*Optimum, error) {
	var gpuNodes []Node
	for _, n := range nodes {
		if n.GPUs > 0 {
			gpuNodes = append(gpuNodes, n)
		}
	}
	if len(gpuNodes) > MaxOptimumNodes || len(instances) > MaxOptimumInstances {
		return nil, fmt.Errorf("%d GPU nodes and %d instances is beyond the exact search (at most %d nodes and %d instances)",
			len(gpuNodes), len(instances), MaxOptimumNodes, MaxOptimumInstances)
	}
	if budget <= 0 {
		budget = DefaultOptimumBudget
	}
	s := newSearch(a, gpuNodes, instances, budget)
	s.instance(0, 0, 0)
	if s.best == nil {
		return nil, fmt.Errorf("the exact search found no placement at all")
	}
	out := s.best
	out.Proven = s.expansions <= s.budget
	out.Expansions = s.expansions
	if out.Pairs > 0 {
		out.Mean = out.Total / time.Duration(out.Pairs)
	}
	return out, nil
}

type search struct {
	nodes     []Node
	instances []Instance
	pods      [][]Pod
	cost      [][]float64 // nanoseconds, node by node
	minCost   float64
	class     []int   // symmetry class of each node
	free      [][]int // free GPUs per island
	// pairsFrom[k] is the number of pairs in instances k and later.
	pairsFrom  []int
	chosen     []int // node of each pod of the current instance
	onNode     [][2]int
	budget     int
	expansions int
	placement  [][]int // node of every pod, per instance; nil when left out

	best *Optimum
}

func newSearch(a Analyzer, nodes []Node, instances []Instance, budget int) *search {
	s := &search{nodes: nodes, instances: instances, budget: budget, minCost: math.Inf(1)}
	n := len(nodes)
	s.cost = make([][]float64, n)
	for i := range nodes {
		s.cost[i] = make([]float64, n)
		for j := range nodes {
			s.cost[i][j] = float64(a.Model.TransferTime(a.KVBytes, a.Class(nodes[i].Labels, nodes[j].Labels)))
			s.minCost = math.Min(s.minCost, s.cost[i][j])
		}
		s.free = append(s.free, nodes[i].FreeIslands())
	}
	// Two nodes are interchangeable when swapping them changes no cost and
	// they have the same islands.
	s.class = make([]int, n)
	for i := range nodes {
		s.class[i] = i
		for j := 0; j < i; j++ {
			if s.class[j] == j && s.swappable(i, j) {
				s.class[i] = j
				break
			}
		}
	}
	s.pairsFrom = make([]int, len(instances)+1)
	for k := len(instances) - 1; k >= 0; k-- {
		pods := instances[k].Pods()
		s.pods = append([][]Pod{pods}, s.pods...)
		s.pairsFrom[k] = s.pairsFrom[k+1] + instances[k].Pairs()
	}
	s.onNode = make([][2]int, n)
	s.placement = make([][]int, len(instances))
	return s
}

func (s *search) swappable(i, j int) bool {
	if s.cost[i][i] != s.cost[j][j] || s.cost[i][j] != s.cost[j][i] || fmt.Sprint(s.free[i]) != fmt.Sprint(s.free[j]) {
		return false
	}
	for m := range s.nodes {
		if m != i && m != j && (s.cost[i][m] != s.cost[j][m] || s.cost[m][i] != s.cost[m][j]) {
			return false
		}
	}
	return true
}

// worse reports whether a partial placement with unplaced GPUs left out and
// at least cost nanoseconds cannot beat the best found.
func (s *search) worse(unplaced int, cost float64) bool {
	if s.best == nil {
		return false
	}
	if unplaced != s.best.UnplacedGPUs {
		return unplaced > s.best.UnplacedGPUs
	}
	return cost >= float64(s.best.Total)-0.5
}

func (s *search) instance(k, unplaced int, cost float64) {
	if s.expansions > s.budget {
		return
	}
	if k == len(s.instances) {
		s.record(unplaced, cost)
		return
	}
	if !s.worse(unplaced, cost+float64(s.pairsFrom[k])*s.minCost) {
		s.chosen = s.chosen[:0]
		s.pod(k, 0, unplaced, cost)
	}
	gpus := s.instances[k].Unit.GPUs()
	if !s.worse(unplaced+gpus, cost+float64(s.pairsFrom[k+1])*s.minCost) {
		s.placement[k] = nil
		s.instance(k+1, unplaced+gpus, cost)
	}
}

func (s *search) record(unplaced int, cost float64) {
	if s.best != nil && !(unplaced < s.best.UnplacedGPUs || unplaced == s.best.UnplacedGPUs && cost < float64(s.best.Total)-0.5) {
		return
	}
	best := &Optimum{UnplacedGPUs: unplaced, Total: time.Duration(math.Round(cost))}
	for k := range s.instances {
		if s.placement[k] == nil {
			best.Unplaced++
		}
		if s.placement[k] != nil {
			best.Pairs += s.instances[k].Pairs()
		}
		for j, p := range s.pods[k] {
			if s.placement[k] != nil {
				p.Node = s.nodes[s.placement[k][j]].Name
			}
			best.Pods = append(best.Pods, p)
		}
	}
	s.best = best
}

// pod places pod j of instance k, then the rest of the instance.
func (s *search) pod(k, j, unplaced int, cost float64) {
	pods := s.pods[k]
	if j == len(pods) {
		s.placement[k] = append([]int(nil), s.chosen...)
		for _, i := range s.chosen {
			s.onNode[i] = [2]int{}
		}
		// The later instances choose in a slice of their own: this one's
		// choices are still needed when the search returns to them.
		mine := s.chosen
		s.chosen = nil
		s.instance(k+1, unplaced, cost)
		s.chosen = mine
		for j, i := range s.chosen {
			s.onNode[i][roleIndex(pods[j].Role)]++
		}
		return
	}
	s.expansions++
	if s.expansions > s.budget {
		return
	}
	p := pods[j]
	pool := s.instances[k].Unit.Mode == ModePool
	// A decode's pairs: one (its nearest prefill) in a pool, every prefill
	// of the instance otherwise. Prefills come first, so all are placed.
	perDecode := 1
	if !pool {
		perDecode = s.instances[k].Unit.Prefill.Replicas
	}
	from := 0
	if j > 0 && pods[j-1].Role == p.Role && pods[j-1].GPUs == p.GPUs {
		from = s.chosen[j-1]
	}
	type candidate struct {
		node   int
		island int
		cost   float64
		free   int
	}
	var cands []candidate
	seen := map[string]bool{}
	for i := from; i < len(s.nodes); i++ {
		island := tightest(s.free[i], p.GPUs)
		if island < 0 {
			continue
		}
		key := s.signature(i)
		if seen[key] {
			continue
		}
		seen[key] = true
		c := candidate{node: i, island: island, free: s.free[i][island]}
		if p.Role == RoleDecode {
			c.cost = math.Inf(1)
			if !pool {
				c.cost = 0
			}
			for jj := 0; jj < j; jj++ {
				if pods[jj].Role == RolePrefill {
					if pool {
						c.cost = math.Min(c.cost, s.cost[s.chosen[jj]][i])
					} else {
						c.cost += s.cost[s.chosen[jj]][i]
					}
				}
			}
		} else {
			for jj := 0; jj < j; jj++ {
				c.cost += s.cost[s.chosen[jj]][i]
			}
		}
		cands = append(cands, c)
	}
	sort.SliceStable(cands, func(a, b int) bool {
		if cands[a].cost != cands[b].cost {
			return cands[a].cost < cands[b].cost
		}
		return cands[a].free < cands[b].free
	})
	for _, c := range cands {
		added := 0.0
		if p.Role == RoleDecode {
			added = c.cost
		}
		pairsLeft := s.pairsFrom[k+1]
		for jj := j + 1; jj < len(pods); jj++ {
			if pods[jj].Role == RoleDecode {
				pairsLeft += perDecode
			}
		}
		if s.worse(unplaced, cost+added+float64(pairsLeft)*s.minCost) {
			continue
		}
		s.free[c.node][c.island] -= p.GPUs
		s.onNode[c.node][roleIndex(p.Role)]++
		s.chosen = append(s.chosen, c.node)
		s.pod(k, j+1, unplaced, cost+added)
		s.chosen = s.chosen[:j]
		s.onNode[c.node][roleIndex(p.Role)]--
		s.free[c.node][c.island] += p.GPUs
		if s.expansions > s.budget {
			return
		}
	}
}

// signature is equal for two nodes that are interchangeable right now.
func (s *search) signature(i int) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(s.class[i]))
	for _, f := range s.free[i] {
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(f))
	}
	fmt.Fprintf(&b, "|%d,%d", s.onNode[i][0], s.onNode[i][1])
	return b.String()
}

func roleIndex(r Role) int {
	if r == RolePrefill {
		return 0
	}
	return 1
}

// tightest is the island with the fewest free GPUs that still holds gpus,
// or -1.
func tightest(free []int, gpus int) int {
	best := -1
	for i, f := range free {
		if f >= gpus && (best < 0 || f < free[best]) {
			best = i
		}
	}
	return best
}
