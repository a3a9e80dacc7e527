package topology

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Bounds of the planner's search. A plan evaluates at most
// PlanCandidatesPerLevel domains per level, chosen from at most
// PlanInspectPerLevel domains looked at, tightest first, so planning a unit
// costs the same at 500 nodes as at 50,000.
const (
	PlanCandidatesPerLevel = 12
	PlanInspectPerLevel    = 256
)

// UnitPod is one pod of a unit to plan.
type UnitPod struct {
	// Name identifies the pod (namespace/name).
	Name    string
	Prefill bool
	Request GPURequest
	// Node is where the pod is already placed (bound or reserved), or ""
	// for a pod the plan must place.
	Node string
}

// UnitSpec is what a plan must respect.
type UnitSpec struct {
	Pods []UnitPod
	// RequiredLevel is the level whose one domain must hold the whole
	// unit, or -1.
	RequiredLevel int
	// ForbidSameNode keeps a prefill and a decode of the unit off one node.
	ForbidSameNode bool
	// Usable says whether a node's report can be trusted now (fresh); nil
	// trusts every report.
	Usable func(node string, heartbeat time.Time) bool
	// Held are pods other plans put on their Node and nobody has reserved
	// yet: the packing leaves their GPUs alone, and they count in no cost.
	// A held pod that no longer fits its node holds nothing.
	Held []UnitPod
	// Nearest prices each decode from its nearest prefill alone: a pool,
	// whose router can pair a decode with the prefill beside it. Otherwise
	// every prefill→decode pair of the unit counts: a replica unit's proxy
	// sends requests through all of them.
	Nearest bool
}

// Plan is where every pod of a unit goes.
type Plan struct {
	// Nodes maps every pod, placed or planned, to its node.
	Nodes map[string]string
	// Cost is the unit's modeled KV-transfer cost in seconds per byte,
	// summed over its prefill→decode pairs: every pair of a replica unit, or
	// each decode and its nearest prefill (UnitSpec.Nearest). LowerBound is
	// the cost with every pair on the finest level; a plan with
	// Cost == LowerBound is optimal.
	Cost, LowerBound float64
	// Level is the finest level whose one domain holds the whole unit (-1:
	// none), and Domain that domain's id.
	Level  int
	Domain string
	// Evaluated counts the candidate domains the search packed.
	Evaluated int
}

// Optimal says the plan cannot be improved on the model.
func (p *Plan) Optimal() bool { return p.Cost <= p.LowerBound*(1+1e-9) }

// ErrNoRoom is returned when no domain the search looked at can hold the
// unit.
var ErrNoRoom = errors.New("no domain has room for the unit")

// PlanUnit places a unit's unplaced pods over the index's nodes: the
// assignment that minimizes the unit's modeled KV-transfer cost (each decode
// from its nearest prefill), subject to every pod's GPU request, the
// required level and the same-node policy; among equal costs the finest
// domain holding the whole unit, then the tightest, so large domains stay
// whole. Pods already placed anchor the plan.
//
// The search goes from the finest level to the coarsest. At each it takes
// the tightest domains with enough free GPUs (at most
// PlanCandidatesPerLevel, found among at most PlanInspectPerLevel), and
// packs the unit into each: sub-units of one prefill and its share of
// decodes (or one decode and its share of prefills) go to the finest
// sub-domain that holds them, the rest pod by pod to the tightest node. It
// stops at the first level whose best plan is optimal, or one level above
// the first that holds the unit at all.
func (v *DomainIndex) PlanUnit(model CostModel, spec UnitSpec) (*Plan, error) {
	v.cluster.mu.RLock()
	defer v.cluster.mu.RUnlock()
	p := &planner{v: v, model: model, spec: spec}
	return p.plan()
}

type planner struct {
	v     *DomainIndex
	model CostModel
	spec  UnitSpec
	// pending are the pods to place, largest first; anchors the placed ones.
	pending, anchors []int
	need, maxPod     int
	lowerBound       float64
	// base holds what every packing starts from (the held pods' GPUs, the
	// anchors), built once per plan however many domains are packed.
	base *sim
}

func (p *planner) plan() (*Plan, error) {
	s := p.spec
	decodes, prefills := 0, 0
	for i, pod := range s.Pods {
		if pod.Prefill {
			prefills++
		} else {
			decodes++
		}
		if pod.Node != "" {
			p.anchors = append(p.anchors, i)
			continue
		}
		p.pending = append(p.pending, i)
		p.need += pod.Request.Count
		if pod.Request.Island == IslandRequired {
			p.maxPod = max(p.maxPod, pod.Request.Count)
		}
	}
	sort.SliceStable(p.pending, func(a, b int) bool {
		return s.Pods[p.pending[a]].Request.Count > s.Pods[p.pending[b]].Request.Count
	})
	if prefills > 0 && len(p.v.levels) > 0 {
		pairs := decodes
		if !s.Nearest {
			pairs *= prefills
		}
		p.lowerBound = float64(pairs) / p.v.levels[len(p.v.levels)-1].Bandwidth
	}
	if len(p.pending) == 0 {
		nodes := map[string]string{}
		for _, pod := range s.Pods {
			nodes[pod.Name] = pod.Node
		}
		return p.result(nodes, -1, ""), nil
	}

	var best *Plan
	evaluated, holdingLevel := 0, -1
	coarsest := 0
	if s.RequiredLevel >= 0 {
		coarsest = s.RequiredLevel
	}
	for level := len(p.v.levels) - 1; level >= coarsest; level-- {
		if holdingLevel >= 0 && level < holdingLevel-1 {
			break
		}
		for _, d := range p.candidates(level) {
			evaluated++
			nodes, ok := p.pack(d)
			if !ok {
				continue
			}
			if holdingLevel < 0 {
				holdingLevel = level
			}
			plan := p.result(nodes, level, d.ID)
			if best == nil || plan.Cost < best.Cost*(1-1e-9) {
				best = plan
			}
			if best.Optimal() {
				break
			}
		}
		if best != nil && best.Optimal() {
			break
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: %d GPUs for %d pods (largest %d on one island), %d domains tried", ErrNoRoom, p.need, len(p.pending), p.maxPod, evaluated)
	}
	best.Evaluated = evaluated
	return best, nil
}

// result prices an assignment.
func (p *planner) result(nodes map[string]string, level int, domain string) *Plan {
	plan := &Plan{Nodes: nodes, LowerBound: p.lowerBound, Level: level, Domain: domain}
	for _, d := range p.spec.Pods {
		if d.Prefill {
			continue
		}
		best, all := math.Inf(1), 0.0
		for _, pf := range p.spec.Pods {
			if !pf.Prefill {
				continue
			}
			c := 1 / p.model.Bandwidth(p.v.classifyLocked(nodes[pf.Name], nodes[d.Name]))
			best = min(best, c)
			all += c
		}
		switch {
		case math.IsInf(best, 1):
		case p.spec.Nearest:
			plan.Cost += best
		default:
			plan.Cost += all
		}
	}
	return plan
}

// candidates are the domains at level that may hold the unit, tightest
// first. With anchors, only the one domain holding them all.
func (p *planner) candidates(level int) []*Domain {
	v := p.v
	if len(p.anchors) > 0 {
		id := ""
		for _, i := range p.anchors {
			place := v.places[p.spec.Pods[i].Node]
			if place == nil || place.ids[level] == "" || (id != "" && place.ids[level] != id) {
				return nil
			}
			id = place.ids[level]
		}
		if d := v.domains[level][id]; d != nil && d.Free >= p.need {
			return []*Domain{d}
		}
		return nil
	}
	keys := v.freeKeys[level]
	start := sort.SearchInts(keys, p.need)
	var out, fallback []*Domain
	inspected := 0
	groups := p.subUnits()
	for _, free := range keys[start:] {
		for _, d := range v.byFree[level][free] {
			inspected++
			if d.Largest() >= p.maxPod {
				if p.roomForSubUnits(d, groups) {
					out = append(out, d)
				} else if len(fallback) < PlanCandidatesPerLevel {
					fallback = append(fallback, d)
				}
			}
			if len(out) >= PlanCandidatesPerLevel || inspected >= PlanInspectPerLevel {
				break
			}
		}
		if len(out) >= PlanCandidatesPerLevel || inspected >= PlanInspectPerLevel {
			break
		}
	}
	// Domains whose nodes can each take a whole sub-unit first; the others
	// only fill up the candidate list.
	for _, d := range fallback {
		if len(out) >= PlanCandidatesPerLevel {
			break
		}
		out = append(out, d)
	}
	return out
}

// roomForSubUnits says whether the domain has a node with a free island for
// each sub-unit, the cheap test that packing it may keep every pair on one
// node's NVLink.
func (p *planner) roomForSubUnits(d *Domain, groups [][]int) bool {
	if len(groups) <= 1 || d.Level == len(p.v.levels)-1 {
		// On the finest level every pair shares the domain anyway.
		return true
	}
	need := 0
	for _, pod := range groups[0] {
		need += p.spec.Pods[pod].Request.Count
	}
	nodes := 0
	for size, n := range d.largestCount {
		if size >= need {
			nodes += n
		}
	}
	return nodes >= len(groups)
}

// subUnits splits the pending pods into groups of one prefill and its share
// of decodes, or one decode and its share of prefills, whichever role is
// scarcer, largest group first.
func (p *planner) subUnits() [][]int {
	var pre, dec []int
	for _, i := range p.pending {
		if p.spec.Pods[i].Prefill {
			pre = append(pre, i)
		} else {
			dec = append(dec, i)
		}
	}
	lead, rest := pre, dec
	if len(dec) < len(pre) {
		lead, rest = dec, pre
	}
	if len(lead) == 0 {
		out := make([][]int, 0, len(rest))
		for _, i := range rest {
			out = append(out, []int{i})
		}
		return out
	}
	groups := make([][]int, len(lead))
	for i, l := range lead {
		groups[i] = []int{l}
	}
	for j, r := range rest {
		groups[j%len(lead)] = append(groups[j%len(lead)], r)
	}
	sort.SliceStable(groups, func(a, b int) bool { return p.groupGPUs(groups[a]) > p.groupGPUs(groups[b]) })
	return groups
}

func (p *planner) groupGPUs(g []int) int {
	n := 0
	for _, i := range g {
		n += p.spec.Pods[i].Request.Count
	}
	return n
}

// sim is a tentative packing: the GPUs it takes on top of the cluster's
// (or its parent's, for a trial that may be dropped).
type sim struct {
	p      *planner
	parent *sim
	used   map[string]Used
	nodes  map[string]string
	// roles counts the unit's prefills (0) and decodes (1) per node.
	roles map[string]*[2]int
}

func (p *planner) newSim() *sim {
	s := &sim{p: p, used: map[string]Used{}, nodes: map[string]string{}, roles: map[string]*[2]int{}}
	for _, pod := range p.spec.Held {
		if fit, ok := s.fitGPUs(pod.Node, pod.Request); ok {
			s.mark(pod.Node, fit)
		}
	}
	for _, i := range p.anchors {
		pod := p.spec.Pods[i]
		s.nodes[pod.Name] = pod.Node
		s.count(pod.Node, pod.Prefill)
	}
	return s
}

func (s *sim) child() *sim {
	return &sim{p: s.p, parent: s, used: map[string]Used{}, nodes: map[string]string{}, roles: map[string]*[2]int{}}
}

func (s *sim) usedOf(node string, n *nodeState) Used {
	for t := s; t != nil; t = t.parent {
		if u, ok := t.used[node]; ok {
			return u
		}
	}
	return n.used
}

func (s *sim) rolesOf(node string) [2]int {
	var r [2]int
	for t := s; t != nil; t = t.parent {
		if c := t.roles[node]; c != nil {
			r[0] += c[0]
			r[1] += c[1]
		}
	}
	return r
}

func (s *sim) count(node string, prefill bool) {
	r := s.roles[node]
	if r == nil {
		r = &[2]int{}
		s.roles[node] = r
	}
	if prefill {
		r[0]++
	} else {
		r[1]++
	}
}

// fit tries a pod on a node in the simulation.
func (s *sim) fit(node string, pod UnitPod) (Fit, bool) {
	n := s.p.v.cluster.nodes[node]
	if n == nil || n.gpus == nil || n.compileErr != nil {
		return Fit{}, false
	}
	if u := s.p.spec.Usable; u != nil && !u(node, n.report.Heartbeat) {
		return Fit{}, false
	}
	if s.p.spec.ForbidSameNode {
		if r := s.rolesOf(node); (pod.Prefill && r[1] > 0) || (!pod.Prefill && r[0] > 0) {
			return Fit{}, false
		}
	}
	fit, unfit := n.gpus.FitOrdered(pod.Request, s.usedOf(node, n), n.order)
	return fit, unfit == nil
}

func (s *sim) take(node string, pod UnitPod, fit Fit) {
	s.mark(node, fit)
	s.nodes[pod.Name] = node
	s.count(node, pod.Prefill)
}

// fitGPUs is whether the request fits the node's free GPUs in the
// simulation, whoever asks.
func (s *sim) fitGPUs(node string, req GPURequest) (Fit, bool) {
	n := s.p.v.cluster.nodes[node]
	if n == nil || n.gpus == nil || n.compileErr != nil {
		return Fit{}, false
	}
	fit, unfit := n.gpus.FitOrdered(req, s.usedOf(node, n), n.order)
	return fit, unfit == nil
}

// mark takes a fit's GPUs in the simulation.
func (s *sim) mark(node string, fit Fit) {
	n := s.p.v.cluster.nodes[node]
	used, ok := s.used[node]
	if !ok {
		used = append(Used(nil), s.usedOf(node, n)...)
		s.used[node] = used
	}
	n.gpus.Mark(used, fit.GPUs)
}

// merge makes a child's packing its parent's.
func (s *sim) merge(c *sim) {
	for k, u := range c.used {
		s.used[k] = u
	}
	for k, n := range c.nodes {
		s.nodes[k] = n
	}
	for k, r := range c.roles {
		for i := 0; i < r[0]; i++ {
			s.count(k, true)
		}
		for i := 0; i < r[1]; i++ {
			s.count(k, false)
		}
	}
}

// placeOn puts pods on the nodes, each on the node where it fills an
// island most tightly; all or nothing.
func (s *sim) placeOn(pods []int, nodes []string) bool {
	trial := s.child()
	for _, i := range pods {
		pod := s.p.spec.Pods[i]
		bestNode, bestFit, found := "", Fit{}, false
		for _, node := range nodes {
			fit, ok := trial.fit(node, pod)
			if !ok {
				continue
			}
			if !found || fit.IslandFree < bestFit.IslandFree {
				bestNode, bestFit, found = node, fit, true
			}
		}
		if !found {
			return false
		}
		trial.take(bestNode, pod, bestFit)
	}
	s.merge(trial)
	return true
}

// pack places the pending pods within domain d, sub-unit by sub-unit.
func (p *planner) pack(d *Domain) (map[string]string, bool) {
	if p.base == nil {
		p.base = p.newSim()
	}
	s := p.base.child()
	for pod, node := range p.base.nodes {
		s.nodes[pod] = node
	}
	finest := len(p.v.levels) - 1
	if d.Level == finest {
		if !s.placeOn(p.pending, d.nodes) {
			return nil, false
		}
		return s.nodes, true
	}
	for _, group := range p.subUnits() {
		if !p.packGroup(s, group, d) {
			return nil, false
		}
	}
	return s.nodes, true
}

// packGroup puts one sub-unit in the finest sub-domain of d that holds it
// whole, else pod by pod on d's nodes.
func (p *planner) packGroup(s *sim, group []int, d *Domain) bool {
	need := p.groupGPUs(group)
	v := p.v
	for level := len(v.levels) - 1; level > d.Level; level-- {
		for _, sub := range v.subDomains(d, level, need) {
			if s.placeOn(group, inside(sub.nodes, d)) {
				return true
			}
		}
	}
	// No finest domain holds the whole sub-unit: keep its lead with as many
	// partners as fit in one, and put each other pod beside a placed pod of
	// the other role where there is room.
	for k := len(group) - 1; k >= 1; k-- {
		trial := s.child()
		if !trial.placeInFinest(group[:k], d) {
			continue
		}
		ok := true
		for _, i := range group[k:] {
			if !trial.placeNear(i, d) {
				ok = false
				break
			}
		}
		if ok {
			s.merge(trial)
			return true
		}
	}
	return s.placeOn(group, d.nodes)
}

// placeInFinest puts the pods together in one finest-level domain inside d,
// the tightest that takes them.
func (s *sim) placeInFinest(pods []int, d *Domain) bool {
	v := s.p.v
	for _, sub := range v.subDomains(d, len(v.levels)-1, s.p.groupGPUs(pods)) {
		if s.placeOn(pods, inside(sub.nodes, d)) {
			return true
		}
	}
	return false
}

// subDomains are the domains at level under d's nodes with at least need
// free GPUs, tightest first.
func (v *DomainIndex) subDomains(d *Domain, level, need int) []*Domain {
	switch {
	case level == d.Level && d.Free >= need:
		return []*Domain{d}
	case level <= d.Level:
		// A coarser level's domain holds d whole: none is under it.
		return nil
	}
	subs := make([]*Domain, 0, len(d.subs[level]))
	for id := range d.subs[level] {
		if sub := v.domains[level][id]; sub != nil && sub.Free >= need && len(sub.nodes) > 0 {
			subs = append(subs, sub)
		}
	}
	// Tightest first; among equals by their first node's name, so that a
	// plan does not depend on map order.
	sort.Slice(subs, func(a, b int) bool {
		if subs[a].Free != subs[b].Free {
			return subs[a].Free < subs[b].Free
		}
		return subs[a].nodes[0] < subs[b].nodes[0]
	})
	return subs
}

// placeNear puts one pod in the finest-level domain of a placed pod of the
// other role that has room, else on the tightest node of d.
func (s *sim) placeNear(i int, d *Domain) bool {
	v := s.p.v
	finest := len(v.levels) - 1
	pod := s.p.spec.Pods[i]
	var partners []string
	for t := s; t != nil; t = t.parent {
		for node := range t.roles {
			partners = append(partners, node)
		}
	}
	// In name order, so that a plan does not depend on map order.
	sort.Strings(partners)
	seen := map[string]bool{}
	for _, node := range partners {
		r, place := s.rolesOf(node), v.places[node]
		if place == nil || (pod.Prefill && r[1] == 0) || (!pod.Prefill && r[0] == 0) {
			continue
		}
		id := place.ids[finest]
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		if sub := v.domains[finest][id]; sub != nil && s.placeOn([]int{i}, inside(sub.nodes, d)) {
			return true
		}
	}
	return s.placeOn([]int{i}, d.nodes)
}

// inside keeps the nodes that are also d's (a global level's domain may
// straddle d).
func inside(nodes []string, d *Domain) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if i := sort.SearchStrings(d.nodes, n); i < len(d.nodes) && d.nodes[i] == n {
			out = append(out, n)
		}
	}
	return out
}
