package topology

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Cluster is the cluster as placement sees it: every node's GPUs (its
// agent's report, compiled once per version), the GPUs the scheduler placed
// pods on since that report (the ledger), and, for each level list a
// profile uses, the domain tree with per-domain aggregates. Everything is
// kept current by events (a report, a node's labels, a reservation), never
// rebuilt per scheduling cycle. It is safe for concurrent use.
type Cluster struct {
	mu     sync.RWMutex
	nodes  map[string]*nodeState
	podsAt map[string]string // pod UID → node, for the ledger
	// claimsAt is the node of each allocated claim (namespace/name).
	claimsAt map[string]string
	views    []*DomainIndex
}

// nodeState is one node. Its free-GPU summary is what the domain
// aggregates add up.
type nodeState struct {
	name   string
	labels map[string]string
	// report is nil until the node's agent reports.
	report     *NodeReport
	gpus       *NodeGPUs
	compileErr error
	ledger     map[string]ledgerEntry
	// claims are the GPUs of allocated ResourceClaims on the node, by
	// claim (namespace/name); see SetClaim.
	claims map[string][]DeviceID
	// order is the order in which the DRA allocator tries the node's GPUs,
	// nil when unknown; see SetAllocationOrder.
	order []DeviceID
	// used is the report's allocations plus the claims' and the ledger's.
	used Used
	// free and largest count the free GPUs outside MIG, in total and on
	// the node's freest NVLink island.
	free, largest int
}

type ledgerEntry struct {
	// pod is namespace/name, as the report names it.
	pod  string
	gpus []int32
}

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{nodes: map[string]*nodeState{}, podsAt: map[string]string{}, claimsAt: map[string]string{}}
}

// SetNodeLabels records a node's labels (its place in the topology).
func (c *Cluster) SetNodeLabels(node string, labels map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(node)
	n.labels = labels
	c.updateLocked(n)
}

// RemoveNode forgets a node, its report and its ledger.
func (c *Cluster) RemoveNode(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[node]
	if !ok {
		return
	}
	for uid := range n.ledger {
		delete(c.podsAt, uid)
	}
	for claim := range n.claims {
		delete(c.claimsAt, claim)
	}
	for _, v := range c.views {
		v.remove(n)
	}
	delete(c.nodes, node)
}

// SetReport records a node's agent report; nil removes it (the NodeTopology
// was deleted). Ledger entries the report now reflects are dropped.
func (c *Cluster) SetReport(node string, r *NodeReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(node)
	n.report = r
	n.gpus, n.compileErr = nil, nil
	if r != nil {
		n.gpus, n.compileErr = CompileNodeGPUs(r)
		for uid, e := range n.ledger {
			if reportsPod(r.Allocations, e.pod) {
				delete(n.ledger, uid)
				delete(c.podsAt, uid)
			}
		}
	}
	c.updateLocked(n)
}

func reportsPod(allocations []Allocation, pod string) bool {
	for _, a := range allocations {
		if a.Pod == pod {
			return true
		}
	}
	return false
}

func (c *Cluster) nodeLocked(node string) *nodeState {
	n, ok := c.nodes[node]
	if !ok {
		n = &nodeState{name: node, ledger: map[string]ledgerEntry{}, claims: map[string][]DeviceID{}}
		c.nodes[node] = n
	}
	return n
}

// updateLocked recomputes a node's used GPUs and summary and passes the
// change on to every domain index.
func (c *Cluster) updateLocked(n *nodeState) {
	n.used, n.free, n.largest = nil, 0, 0
	if n.gpus != nil && n.compileErr == nil {
		n.used = n.gpus.NewUsed(n.report.Allocations, nil)
		for _, ids := range n.claims {
			n.gpus.MarkDevices(n.used, ids)
		}
		for _, e := range n.ledger {
			n.gpus.Mark(n.used, e.gpus)
		}
		n.free, n.largest = n.gpus.freeSummary(n.used)
	}
	for _, v := range c.views {
		v.update(n)
	}
}

// freeSummary counts the free GPUs outside MIG and the most on one island.
func (n *NodeGPUs) freeSummary(used Used) (free, largest int) {
	for _, f := range n.FreeByIsland(used) {
		free += f
		largest = max(largest, f)
	}
	return free, largest
}

// FreeByIsland counts, for each of n.Islands, the GPUs neither used nor
// MIG-partitioned: what a pod placed on the island could take.
func (n *NodeGPUs) FreeByIsland(used Used) []int {
	out := make([]int, len(n.Islands))
	for k, island := range n.Islands {
		for _, i := range island {
			if (i >= len(used) || !used[i]) && !n.GPUs[i].MIG {
				out[k]++
			}
		}
	}
	return out
}

// NodeView is what a caller may read of one node, copied under the lock.
type NodeView struct {
	// Reported: the agent has reported. Err is set when the report is
	// malformed; GPUs and Used are then nil.
	Reported  bool
	Err       error
	Heartbeat time.Time
	GPUs      *NodeGPUs
	Used      Used
}

// Node returns a node's state; ok is false for a node the cluster has never
// heard of.
func (c *Cluster) Node(node string) (NodeView, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nodes[node]
	if !ok {
		return NodeView{}, false
	}
	return n.viewLocked(true), true
}

// viewLocked copies the node's state; the used set only when asked for.
func (n *nodeState) viewLocked(withUsed bool) NodeView {
	v := NodeView{Reported: n.report != nil, Err: n.compileErr, GPUs: n.gpus}
	if n.report != nil {
		v.Heartbeat = n.report.Heartbeat
	}
	if withUsed && n.used != nil {
		v.Used = append(Used(nil), n.used...)
	}
	return v
}

// Fit evaluates a request on a node's free GPUs. ok is false when the node
// has no usable report (none, or malformed); the view says which.
func (c *Cluster) Fit(node string, req GPURequest) (fit Fit, unfit *Unfit, view NodeView, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fitLocked(node, req)
}

func (c *Cluster) fitLocked(node string, req GPURequest) (Fit, *Unfit, NodeView, bool) {
	n, found := c.nodes[node]
	if !found {
		return Fit{}, nil, NodeView{}, false
	}
	view := n.viewLocked(false)
	if n.gpus == nil || n.compileErr != nil {
		return Fit{}, nil, view, false
	}
	fit, unfit := n.gpus.FitOrdered(req, n.used, n.order)
	return fit, unfit, view, true
}

// Reserve records that pod (UID uid, namespace/name name) takes the GPUs
// its request fits on node, and returns them. It fits and records under one
// lock, so two pods racing for the last island never both get it. trust
// says why a node's state cannot be used ("" when it can); Reserve then
// records nothing and returns that reason.
func (c *Cluster) Reserve(uid, name, node string, req GPURequest, trust func(view NodeView, usable bool) string) (Fit, *Unfit, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fit, unfit, view, usable := c.fitLocked(node, req)
	if reason := trust(view, usable); reason != "" {
		return Fit{}, nil, reason
	}
	if unfit != nil {
		return fit, unfit, ""
	}
	c.releaseLocked(uid)
	n := c.nodes[node]
	n.ledger[uid] = ledgerEntry{pod: name, gpus: fit.GPUs}
	c.podsAt[uid] = node
	c.updateLocked(n)
	return fit, nil, ""
}

// Usable is the trust rule that accepts any node with a well-formed report.
func Usable(view NodeView, usable bool) string {
	switch {
	case !view.Reported:
		return "node has no report"
	case !usable:
		return fmt.Sprintf("node's report is malformed: %v", view.Err)
	}
	return ""
}

// Release forgets a pod's reservation: the placement was abandoned, or the
// pod is gone.
func (c *Cluster) Release(uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(uid)
}

func (c *Cluster) releaseLocked(uid string) {
	node, ok := c.podsAt[uid]
	if !ok {
		return
	}
	delete(c.podsAt, uid)
	if n, ok := c.nodes[node]; ok {
		delete(n.ledger, uid)
		c.updateLocked(n)
	}
}

// LedgerSize is the number of pods whose GPUs the report does not show yet.
func (c *Cluster) LedgerSize() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.podsAt)
}

// LedgerGPUs is the number of GPUs held by the ledger: those of the pods
// whose GPUs the reports do not show yet.
func (c *Cluster) LedgerGPUs() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	total := 0
	for _, n := range c.nodes {
		for _, e := range n.ledger {
			total += len(e.gpus)
		}
	}
	return total
}

// Domains returns the domain index for levels, creating it on first use
// from the nodes known so far. Profiles with the same levels share one.
func (c *Cluster) Domains(levels Levels) *DomainIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.views {
		if sameLevels(v.levels, levels) {
			return v
		}
	}
	v := newDomainIndex(c, levels)
	for _, n := range c.nodes {
		v.update(n)
	}
	c.views = append(c.views, v)
	return v
}

func sameLevels(a, b Levels) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Domain is one domain of one level: the nodes in it and what they have free.
type Domain struct {
	Level int
	ID    string
	// nodes are the member nodes' names, sorted.
	nodes []string
	// Free is the free GPUs outside MIG over all member nodes.
	Free int
	// largestCount counts member nodes by their freest island, so the
	// largest free island (largest) is known without visiting the nodes.
	largestCount map[int]int
	largest      int
	// subs count, per finer level, the member nodes in each domain of that
	// level, so that the sub-domains are known without visiting the nodes.
	subs []map[string]int
}

// countSubs adds delta member nodes to the finer-level domains of p.
func (d *Domain) countSubs(p *placeOf, from, delta int) {
	for j := max(from, d.Level+1); j < len(p.ids); j++ {
		d.countSub(j, p.ids[j], delta)
	}
}

func (d *Domain) countSub(level int, id string, delta int) {
	if id == "" {
		return
	}
	if d.subs[level] == nil {
		d.subs[level] = map[string]int{}
	}
	if n := d.subs[level][id] + delta; n > 0 {
		d.subs[level][id] = n
	} else {
		delete(d.subs[level], id)
	}
}

// Largest is the most free GPUs on one NVLink island of any member node.
func (d *Domain) Largest() int { return d.largest }

func (d *Domain) countLargest(size, delta int) {
	n := d.largestCount[size] + delta
	if n <= 0 {
		delete(d.largestCount, size)
	} else {
		d.largestCount[size] = n
	}
	switch {
	case delta > 0 && size > d.largest:
		d.largest = size
	case delta < 0 && n <= 0 && size == d.largest:
		d.largest = 0
		for s := range d.largestCount {
			d.largest = max(d.largest, s)
		}
	}
}

// placeOf is a node's place in one level list.
type placeOf struct {
	path DomainPath
	ids  []string
	// gpuDirect is GPUDirect RDMA readiness: the agent's verdict when it
	// reported, otherwise the node's label.
	gpuDirect bool
	// free and largest are what the domains last counted for the node.
	free, largest int
}

// DomainIndex is the domain tree of one level list over a Cluster.
type DomainIndex struct {
	cluster *Cluster
	levels  Levels
	places  map[string]*placeOf
	domains []map[string]*Domain
	// byFree holds, per level, the domains by free GPUs, and freeKeys the
	// distinct free counts in ascending order, so that the tightest domain
	// with enough room is found without visiting the others.
	byFree   []map[int]map[string]*Domain
	freeKeys [][]int
}

func newDomainIndex(c *Cluster, levels Levels) *DomainIndex {
	v := &DomainIndex{cluster: c, levels: levels, places: map[string]*placeOf{}}
	for range levels {
		v.domains = append(v.domains, map[string]*Domain{})
		v.byFree = append(v.byFree, map[int]map[string]*Domain{})
		v.freeKeys = append(v.freeKeys, nil)
	}
	return v
}

// Levels returns the index's level list.
func (v *DomainIndex) Levels() Levels { return v.levels }

func (v *DomainIndex) update(n *nodeState) {
	old := v.places[n.name]
	p := &placeOf{path: v.levels.PathOf(n.labels), ids: make([]string, len(v.levels)), free: n.free, largest: n.largest}
	for i := range v.levels {
		p.ids[i] = v.levels.DomainID(p.path, i)
	}
	if n.report != nil {
		p.gpuDirect = n.report.GPUDirectReady
	} else {
		p.gpuDirect = GPUDirectRDMAReady(n.labels)
	}
	for i := range v.levels {
		var oldID string
		if old != nil {
			oldID = old.ids[i]
		}
		if old != nil && oldID == p.ids[i] {
			if oldID == "" {
				continue
			}
			d := v.domains[i][oldID]
			if old.free != p.free || old.largest != p.largest {
				v.reFree(d, d.Free-old.free+p.free)
				d.countLargest(old.largest, -1)
				d.countLargest(p.largest, +1)
			}
			// The node stays in d; a finer domain of it may have changed.
			for j := i + 1; j < len(v.levels); j++ {
				if old.ids[j] != p.ids[j] {
					d.countSub(j, old.ids[j], -1)
					d.countSub(j, p.ids[j], +1)
				}
			}
			continue
		}
		if old != nil && oldID != "" {
			v.leave(i, oldID, n.name, old)
		}
		if p.ids[i] != "" {
			v.join(i, p.ids[i], n.name, p)
		}
	}
	v.places[n.name] = p
}

func (v *DomainIndex) remove(n *nodeState) {
	old := v.places[n.name]
	if old == nil {
		return
	}
	for i, id := range old.ids {
		if id != "" {
			v.leave(i, id, n.name, old)
		}
	}
	delete(v.places, n.name)
}

func (v *DomainIndex) join(level int, id, node string, p *placeOf) {
	d := v.domains[level][id]
	if d == nil {
		d = &Domain{Level: level, ID: id, largestCount: map[int]int{}, subs: make([]map[string]int, len(v.levels))}
		v.domains[level][id] = d
		v.addFree(d)
	}
	i := sort.SearchStrings(d.nodes, node)
	d.nodes = append(d.nodes, "")
	copy(d.nodes[i+1:], d.nodes[i:])
	d.nodes[i] = node
	v.reFree(d, d.Free+p.free)
	d.countLargest(p.largest, +1)
	d.countSubs(p, level+1, +1)
}

func (v *DomainIndex) leave(level int, id, node string, p *placeOf) {
	d := v.domains[level][id]
	if d == nil {
		return
	}
	if i := sort.SearchStrings(d.nodes, node); i < len(d.nodes) && d.nodes[i] == node {
		d.nodes = append(d.nodes[:i], d.nodes[i+1:]...)
	}
	v.reFree(d, d.Free-p.free)
	d.countLargest(p.largest, -1)
	d.countSubs(p, level+1, -1)
	if len(d.nodes) == 0 {
		v.dropFree(d)
		delete(v.domains[level], id)
	}
}

func (v *DomainIndex) addFree(d *Domain) {
	bucket := v.byFree[d.Level][d.Free]
	if bucket == nil {
		bucket = map[string]*Domain{}
		v.byFree[d.Level][d.Free] = bucket
		keys := v.freeKeys[d.Level]
		i := sort.SearchInts(keys, d.Free)
		keys = append(keys, 0)
		copy(keys[i+1:], keys[i:])
		keys[i] = d.Free
		v.freeKeys[d.Level] = keys
	}
	bucket[d.ID] = d
}

func (v *DomainIndex) dropFree(d *Domain) {
	bucket := v.byFree[d.Level][d.Free]
	delete(bucket, d.ID)
	if len(bucket) == 0 {
		delete(v.byFree[d.Level], d.Free)
		keys := v.freeKeys[d.Level]
		if i := sort.SearchInts(keys, d.Free); i < len(keys) && keys[i] == d.Free {
			v.freeKeys[d.Level] = append(keys[:i], keys[i+1:]...)
		}
	}
}

func (v *DomainIndex) reFree(d *Domain, free int) {
	if free == d.Free {
		return
	}
	v.dropFree(d)
	d.Free = free
	v.addFree(d)
}

// Place is a node's place in the topology, as Place returns it.
type Place struct {
	Path      DomainPath
	IDs       []string
	GPUDirect bool
}

// Place returns a node's domain path and ids; ok is false for a node the
// index does not know.
func (v *DomainIndex) Place(node string) (Place, bool) {
	v.cluster.mu.RLock()
	defer v.cluster.mu.RUnlock()
	p, ok := v.places[node]
	if !ok {
		return Place{}, false
	}
	return Place{Path: p.path, IDs: p.ids, GPUDirect: p.gpuDirect}, true
}

// Classify is the model's one pair classifier over this index's nodes: the
// path class between a and b, counting GPUDirect RDMA on both ends. A pair
// on one node is classed as its finest level.
func (v *DomainIndex) Classify(a, b string) PathClass {
	v.cluster.mu.RLock()
	defer v.cluster.mu.RUnlock()
	return v.classifyLocked(a, b)
}

func (v *DomainIndex) classifyLocked(a, b string) PathClass {
	pa, pb := v.places[a], v.places[b]
	if pa == nil || pb == nil {
		return PathNone
	}
	return v.levels.Classify(pa.path, pb.path, pa.gpuDirect, pb.gpuDirect)
}

// DomainFree returns the free GPUs and the largest free island of the
// domain at level holding node.
func (v *DomainIndex) DomainFree(level int, node string) (free, largest int, ok bool) {
	v.cluster.mu.RLock()
	defer v.cluster.mu.RUnlock()
	p := v.places[node]
	if p == nil || level < 0 || level >= len(p.ids) || p.ids[level] == "" {
		return 0, 0, false
	}
	d := v.domains[level][p.ids[level]]
	return d.Free, d.Largest(), true
}

// nodesNearScan bounds the nodes NodesNear looks at in one domain.
const nodesNearScan = 512

// NodesNear returns up to limit nodes, other than except, in the domain at
// level holding node that have at least gpus free GPUs on one island,
// tightest first.
func (v *DomainIndex) NodesNear(level int, node string, gpus, limit int, except func(node string) bool) []string {
	v.cluster.mu.RLock()
	defer v.cluster.mu.RUnlock()
	p := v.places[node]
	if p == nil || level < 0 || level >= len(p.ids) || p.ids[level] == "" {
		return nil
	}
	d := v.domains[level][p.ids[level]]
	type cand struct {
		name    string
		largest int
	}
	var cands []cand
	// Look at a bounded stretch of the domain's nodes, starting at node's
	// own place in it, so a zone of 50,000 nodes costs what a leaf does.
	start := sort.SearchStrings(d.nodes, node)
	for k := 0; k < len(d.nodes) && k < nodesNearScan; k++ {
		name := d.nodes[(start+k)%len(d.nodes)]
		if except != nil && except(name) {
			continue
		}
		if q := v.places[name]; q != nil && q.largest >= gpus {
			cands = append(cands, cand{name, q.largest})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].largest < cands[j].largest })
	out := make([]string, 0, min(limit, len(cands)))
	for _, c := range cands[:min(limit, len(cands))] {
		out = append(out, c.name)
	}
	return out
}

// FreeOf returns the free GPUs and the largest free island of the domain
// with this id at level; ok is false for a domain without nodes.
func (v *DomainIndex) FreeOf(level int, id string) (free, largest int, ok bool) {
	v.cluster.mu.RLock()
	defer v.cluster.mu.RUnlock()
	if level < 0 || level >= len(v.domains) {
		return 0, 0, false
	}
	d := v.domains[level][id]
	if d == nil {
		return 0, 0, false
	}
	return d.Free, d.Largest(), true
}
