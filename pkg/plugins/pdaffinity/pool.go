package pdaffinity

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/pkg/metrics"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// maxPartners bounds the partners a pool's first pods leave room for.
const maxPartners = 8

// partnersPerPod is how many pods of the other role one pod of role serves
// at the pool's prefill share: a 1:2 pool's prefill leaves room for two
// decodes, its decode for one prefill.
func partnersPerPod(role Role, prefillShare float64) int {
	other := prefillShare / (1 - prefillShare)
	if role == RolePrefill {
		other = (1 - prefillShare) / prefillShare
	}
	return min(max(int(math.Round(other)), 1), maxPartners)
}

// Bounds of a pool pod's narrowed search: at most poolCandidates nodes, found
// around at most poolTargets pods of the other role.
const (
	poolCandidates = 16
	poolTargets    = 64
)

// poolCandidates narrows a pool pod's search to the nodes around the
// group's pods of the other role that have room for it: those sharing the
// finest level with one of them, widening a level only when that level has
// no room. A pool whose other role has no pod placed yet goes where pods of
// that role can still join it: the plan of the pod and its share of the
// other role (the pool's ratio), each as large as the pod. nil evaluates
// every node (no model, or no room anywhere near).
func (pl *PDAffinity) poolCandidates(ctx context.Context, pod *v1.Pod, m Member, s *preFilterState) (*fwk.PreFilterResult, *fwk.Status) {
	if pl.domains == nil {
		return nil, nil
	}
	gpus := int(pl.gpuRequest(pod))
	g := s.index
	coarsest := max(s.requiredLevel, 0)
	if g.targetNodes.Len() > 0 {
		targets := sets.List(g.targetNodes)
		if len(targets) > poolTargets {
			targets = targets[:poolTargets]
		}
		names := sets.New[string]()
		for level := len(pl.levels) - 1; level >= coarsest && names.Len() == 0; level-- {
			for _, t := range targets {
				if names.Len() >= poolCandidates {
					break
				}
				for _, n := range pl.domains.NodesNear(level, t, gpus, poolCandidates-names.Len(), names.Has) {
					if pl.args.SameNode == config.SameNodeForbid && g.targetNodes.Has(n) {
						continue
					}
					names.Insert(n)
				}
			}
		}
		if names.Len() == 0 {
			return nil, nil
		}
		return &fwk.PreFilterResult{NodeNames: names}, nil
	}
	if pl.handle != nil {
		// The pool's chunks planned pods of the other role that are still
		// to be reserved: they go first, and this pod then finds them.
		// Taking the room planned for them now would pair it with nothing.
		pl.plans.mu.Lock()
		held := pl.plans.poolHolds(pod.Namespace, m.Group, m.Role.opposite() == RolePrefill)
		pl.plans.mu.Unlock()
		if held > 0 {
			return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("pool %s: waiting for %d planned %s pods of the pool to be placed first", m.Group, held, m.Role.opposite()))
		}
	}
	if s.requiredLevel >= 0 {
		// Nothing to be near yet: any node may start the pool.
		return nil, nil
	}
	req, err := pl.src.RequestOf(pod, pl.gpuResource)
	if err != nil {
		return nil, nil
	}
	me := topology.UnitPod{Name: podKey(pod), Prefill: m.Role == RolePrefill, Request: req}
	spec := topology.UnitSpec{Pods: []topology.UnitPod{me}, RequiredLevel: -1, Nearest: true,
		ForbidSameNode: pl.args.SameNode == config.SameNodeForbid, Usable: pl.src.Fresh()}
	for i := range partnersPerPod(m.Role, s.ratio) {
		spec.Pods = append(spec.Pods, topology.UnitPod{Name: fmt.Sprintf("%spartner-%d", placeholderPrefix, i), Prefill: !me.Prefill, Request: req})
	}
	pl.plans.mu.Lock()
	spec.Held = pl.plans.holds("")
	pl.plans.mu.Unlock()
	plan, err := pl.domains.PlanUnit(pl.model, spec)
	if err != nil {
		klog.FromContext(ctx).V(4).Info("No room for a pool's first pair", "pod", klog.KObj(pod), "err", err)
		return nil, nil
	}
	node := plan.Nodes[me.Name]
	// Score by the pair's plan: its node first, the fallbacks by nearness
	// to it.
	p := &planned{node: node, oppositeNodes: sets.New[string]()}
	p.peers[roleSlot(m.Role.opposite())] = []string{node}
	s.planned = p
	names := sets.New(node)
	for level := len(pl.levels) - 1; level >= 0 && names.Len() <= planFallbacks; level-- {
		for _, n := range pl.domains.NodesNear(level, node, gpus, planFallbacks+1-names.Len(), names.Has) {
			names.Insert(n)
		}
	}
	return &fwk.PreFilterResult{NodeNames: names}, nil
}

// Pool chunks: a pool's pending pods are planned together, a few at a time,
// as a replica unit is, so that a pool arriving whole forms compact cells of
// prefills with their share of decodes instead of each pod taking its own
// hole.
const (
	// poolChunk is the most pods one chunk plans.
	poolChunk = 12
	// chunkTTL forgets a chunk whose pods stopped coming (deleted, or
	// taken by another scheduler).
	chunkTTL = 2 * time.Minute
)

// poolPlan places a pool pod by its chunk's plan: the plan made with it, or
// a new one over the group's pending pods of both roles. nil falls back to
// poolCandidates: no model, only one role pending, a pod whose planned
// placement failed, a required level with pods of the group placed already
// (a chunk plans only itself), or no room.
func (pl *PDAffinity) poolPlan(ctx context.Context, pod *v1.Pod, m Member, s *preFilterState) *fwk.PreFilterResult {
	if pl.domains == nil || pl.handle == nil {
		return nil
	}
	logger := klog.FromContext(ctx)
	me := podKey(pod)
	now := time.Now()
	pl.plans.mu.Lock()
	defer pl.plans.mu.Unlock()
	if key, ok := pl.plans.chunkOf[me]; ok {
		up := pl.plans.byUnit[key]
		if up == nil {
			return nil
		}
		s.planKey = key
		up.attempts[me]++
		node, planned := planNode(up.plan, me)
		if up.attempts[me] > 1 || !planned {
			// The planned placement failed: the pod joins the pool where
			// poolCandidates finds room, and the chunk no longer waits
			// for it.
			delete(up.plan.Nodes, me)
			return nil
		}
		p, result := pl.plannedResult(pod, m, up, node, s.requiredLevel)
		pl.forbidBesidePlaced(p, s)
		s.planned = p
		return result
	}
	pl.plans.expireChunks(now)
	spec, own, other, ok := pl.chunkSpec(pod, m, s)
	if !ok {
		return nil
	}
	mine := spec.Pods[0]
	spec.Held = pl.plans.holds("")
	plan, err := pl.domains.PlanUnit(pl.model, spec)
	// A chunk the cluster cannot hold shrinks, both roles in proportion,
	// rather than leaving its pods to take holes one by one: a pool whose
	// decodes took the room its prefills needed pairs nothing.
	for err != nil && len(own)+len(other) > 1 {
		own, other = shrinkChunk(own, other)
		spec.Pods = append(append([]topology.UnitPod{mine}, own...), other...)
		plan, err = pl.domains.PlanUnit(pl.model, spec)
	}
	if err != nil {
		logger.V(4).Info("No room for a pool chunk", "pod", klog.KObj(pod), "group", m.Group, "pods", len(spec.Pods), "err", err)
		return nil
	}
	pl.plans.seq++
	key := fmt.Sprintf("%s/pool:%s#%d", pod.Namespace, m.Group, pl.plans.seq)
	up := pl.plans.get(key)
	pl.plans.setPlan(key, up, plan, spec)
	metrics.Planned(metrics.ModePool, metrics.TriggerFirst)
	up.attempts[me] = 1
	for _, p := range spec.Pods {
		pl.plans.chunkOf[p.Name] = key
		up.chunk = append(up.chunk, p.Name)
	}
	pl.plans.chunks = append(pl.plans.chunks, chunkRef{key: key, created: now})
	logger.V(4).Info("Planned a pool chunk", "group", m.Group, "pods", len(plan.Nodes), "level", pl.levelName(plan.Level),
		"domain", plan.Domain, "optimal", plan.Optimal(), "evaluated", plan.Evaluated)
	s.planKey = key
	p, result := pl.plannedResult(pod, m, up, plan.Nodes[me], s.requiredLevel)
	pl.forbidBesidePlaced(p, s)
	s.planned = p
	return result
}

// forbidBesidePlaced keeps a chunk pod off the nodes of the group's placed
// pods of the other role when sameNode is Forbid: the chunk's plan knows
// only its own pods.
func (pl *PDAffinity) forbidBesidePlaced(p *planned, s *preFilterState) {
	if pl.args.SameNode == config.SameNodeForbid && s.index != nil {
		p.oppositeNodes = p.oppositeNodes.Union(s.index.targetNodes)
	}
}

// chunkSpec is the pod and up to poolChunk of its group's pending pool pods
// (not bound, not reserved, in no other chunk, for this scheduler), both
// roles in the proportion they are pending, in queue (name) order: the spec
// with the pod first, then the others of its role (own) and those of the
// other role (other).
func (pl *PDAffinity) chunkSpec(pod *v1.Pod, m Member, s *preFilterState) (spec topology.UnitSpec, own, other []topology.UnitPod, ok bool) {
	spec = topology.UnitSpec{RequiredLevel: s.requiredLevel, Nearest: true, ForbidSameNode: pl.args.SameNode == config.SameNodeForbid, Usable: pl.src.Fresh()}
	objs, err := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().GetIndexer().ByIndex(podGroupIndex, podGroupKey(pod.Namespace, m.Group))
	if err != nil {
		return spec, nil, nil, false
	}
	var pending [2][]*v1.Pod
	placed := false
	for _, obj := range objs {
		p, ok := obj.(*v1.Pod)
		if !ok || p.UID == pod.UID {
			continue
		}
		peer, ok, err := pl.members.read(p)
		if !ok || err != nil || peer.Unit != "" || peer.Group != m.Group {
			continue
		}
		if pl.assumed.nodeOf(p) != "" {
			placed = true
			continue
		}
		if _, chunked := pl.plans.chunkOf[podKey(p)]; chunked || p.DeletionTimestamp != nil ||
			p.Spec.SchedulerName != pod.Spec.SchedulerName || len(p.Spec.SchedulingGates) > 0 {
			continue
		}
		pending[roleSlot(peer.Role)] = append(pending[roleSlot(peer.Role)], p)
	}
	if placed && s.requiredLevel >= 0 {
		return spec, nil, nil, false
	}
	mineSlot, otherSlot := roleSlot(m.Role), roleSlot(m.Role.opposite())
	if len(pending[otherSlot]) == 0 {
		return spec, nil, nil, false
	}
	all := len(pending[0]) + len(pending[1]) + 1
	total := min(poolChunk, all)
	// The pod's own role gets its pending share of the chunk, the pod
	// itself included; the other role the rest.
	share := float64(len(pending[mineSlot])+1) / float64(all)
	ownN := min(max(int(math.Round(float64(total)*share)), 1), len(pending[mineSlot])+1)
	otherN := min(max(total-ownN, 1), len(pending[otherSlot]))
	for _, list := range pending {
		sort.Slice(list, func(a, b int) bool { return list[a].Name < list[b].Name })
	}
	req, err := pl.src.RequestOf(pod, pl.gpuResource)
	if err != nil {
		return spec, nil, nil, false
	}
	spec.Pods = append(spec.Pods, topology.UnitPod{Name: podKey(pod), Prefill: m.Role == RolePrefill, Request: req})
	pick := func(slot, n int) []topology.UnitPod {
		var out []topology.UnitPod
		for _, p := range pending[slot][:n] {
			if req, err := pl.src.RequestOf(p, pl.gpuResource); err == nil {
				out = append(out, topology.UnitPod{Name: podKey(p), Prefill: slot == roleSlot(RolePrefill), Request: req})
			}
		}
		return out
	}
	own, other = pick(mineSlot, ownN-1), pick(otherSlot, otherN)
	spec.Pods = append(append(spec.Pods, own...), other...)
	return spec, own, other, len(other) > 0
}

// shrinkChunk drops about a quarter of a chunk's pods, the last in queue
// order, keeping the roles' proportion (the chunk's first pod, not in own,
// counts for its role) and at least one pod of the other role.
func shrinkChunk(own, other []topology.UnitPod) ([]topology.UnitPod, []topology.UnitPod) {
	total := 1 + len(own) + len(other)
	next := min(total*3/4, total-1)
	keepOwn := min(max(int(math.Round(float64(next)*float64(1+len(own))/float64(total)))-1, 0), len(own))
	keepOther := min(max(next-1-keepOwn, 1), len(other))
	if keepOwn+keepOther == len(own)+len(other) {
		// Rounding kept everything: drop one of the larger role.
		if len(own) >= len(other) && keepOwn > 0 {
			keepOwn--
		} else if keepOther > 1 {
			keepOther--
		} else if keepOwn > 0 {
			keepOwn--
		}
	}
	return own[:keepOwn], other[:keepOther]
}

// expireChunks forgets chunks planned longer than chunkTTL ago, oldest
// first. Callers hold mu.
func (u *unitPlans) expireChunks(now time.Time) {
	for len(u.chunks) > 0 && now.Sub(u.chunks[0].created) > chunkTTL {
		if up := u.byUnit[u.chunks[0].key]; up != nil {
			u.forget(u.chunks[0].key, up)
		}
		u.chunks = u.chunks[1:]
	}
}
