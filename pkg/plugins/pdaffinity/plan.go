package pdaffinity

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/pkg/metrics"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Fallbacks a planned pod is offered besides its planned node, nearest
// first, so that a planned node rejected by another plugin (CPU, a taint)
// does not leave the pod pending.
const planFallbacks = 4

// unitPlans are the plans of the replica units being placed, by
// namespace/unit. A plan is made when a unit's first pod reaches PreFilter,
// redone when a pod comes back to PreFilter after its planned placement
// failed, and forgotten when every planned pod is bound.
type unitPlans struct {
	mu     sync.Mutex
	byUnit map[string]*unitPlan
	// open are the units that may hold GPUs for other plans (see holds):
	// every unit with a planned pod neither reserved, bound nor failed is
	// in it, and holds drops the ones it finds holding nothing, so a plan
	// visits the units still being placed, not every unit in flight.
	open sets.Set[string]
	// chunkOf maps a pool pod to the key of the pool chunk planned with it,
	// and chunks are the live chunks, oldest first.
	chunkOf map[string]string
	chunks  []chunkRef
	seq     int
}

type chunkRef struct {
	key     string
	created time.Time
}

type unitPlan struct {
	plan *topology.Plan
	// attempts counts each pod's PreFilter passes since it was last
	// reserved: 1 uses the plan, 2 replans, more evaluates every node.
	attempts map[string]int
	// reserved are the unit's pods this scheduler reserved, by pod key.
	reserved map[string]string
	bound    sets.Set[string]
	// chunk are a pool chunk's pods, planned or not.
	chunk []string
	// pods are the plan's pods as planned, placeholders included, for the
	// holds other plans respect.
	pods map[string]topology.UnitPod
}

// setPlan makes plan the unit key's, remembering what each of its pods
// asks, and opens the unit for holds. Callers hold mu.
func (u *unitPlans) setPlan(key string, up *unitPlan, plan *topology.Plan, spec topology.UnitSpec) {
	u.open.Insert(key)
	up.plan = plan
	up.pods = make(map[string]topology.UnitPod, len(spec.Pods))
	for _, p := range spec.Pods {
		up.pods[p.Name] = p
	}
}

// holds are the pods of every plan but except's that are planned on a node
// and neither reserved nor bound yet, nor failed there: a new plan leaves
// their GPUs alone, so that two plans made before either unit's pods are
// reserved do not promise the same GPUs. Holds steer plans only; Filter
// does not see them. Callers hold mu.
func (u *unitPlans) holds(except string) []topology.UnitPod {
	var out []topology.UnitPod
	for key := range u.open {
		up := u.byUnit[key]
		if up == nil || up.plan == nil {
			u.open.Delete(key)
			continue
		}
		if key == except {
			continue
		}
		held := len(out)
		for name, node := range up.plan.Nodes {
			if _, reserved := up.reserved[name]; reserved || up.bound.Has(name) {
				continue
			}
			if up.attempts[name] > 1 {
				// Its planned placement failed once: it holds nothing.
				continue
			}
			if pod, ok := up.pods[name]; ok {
				pod.Node = node
				out = append(out, pod)
			}
		}
		if len(out) == held {
			// Nothing left to hold until a pod is unreserved or the unit
			// is planned again, which reopen it.
			u.open.Delete(key)
		}
	}
	// In a fixed order, so that a plan does not depend on map order.
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// poolHolds counts a pool's pods of one role that its live chunks planned
// and nobody has reserved yet. Callers hold mu.
func (u *unitPlans) poolHolds(namespace, group string, prefill bool) int {
	prefix := namespace + "/pool:" + group + "#"
	n := 0
	for _, c := range u.chunks {
		up := u.byUnit[c.key]
		if !strings.HasPrefix(c.key, prefix) || up == nil || up.plan == nil {
			continue
		}
		for name := range up.plan.Nodes {
			if _, reserved := up.reserved[name]; reserved || up.bound.Has(name) {
				continue
			}
			if pod, ok := up.pods[name]; ok && pod.Prefill == prefill {
				n++
			}
		}
	}
	return n
}

func newUnitPlans() *unitPlans {
	return &unitPlans{byUnit: map[string]*unitPlan{}, open: sets.New[string](), chunkOf: map[string]string{}}
}

func (u *unitPlans) get(key string) *unitPlan {
	p := u.byUnit[key]
	if p == nil {
		p = &unitPlan{attempts: map[string]int{}, reserved: map[string]string{}, bound: sets.New[string]()}
		u.byUnit[key] = p
	}
	return p
}

// planned is what PreFilter hands Filter and Score for a planned pod.
type planned struct {
	node string
	// nodes are the plan's nodes of the unit's other pods, by role slot.
	peers [2][]string
	// oppositeNodes hold a placed pod of the other role (same-node policy).
	oppositeNodes sets.Set[string]
}

func podKey(pod *v1.Pod) string { return pod.Namespace + "/" + pod.Name }

// planFor plans the pod's unit, or reuses its plan, and returns where the
// pod goes and the nodes PreFilter narrows the search to; nil when the pod
// should be evaluated on every node (no model, no room, or a plan that
// failed twice).
func (pl *PDAffinity) planFor(ctx context.Context, pod *v1.Pod, m Member, requiredLevel, unitSize int) (*planned, *fwk.PreFilterResult) {
	if pl.domains == nil || pl.handle == nil {
		return nil, nil
	}
	logger := klog.FromContext(ctx)
	key := pod.Namespace + "/" + m.Unit
	me := podKey(pod)
	pl.plans.mu.Lock()
	defer pl.plans.mu.Unlock()
	up := pl.plans.get(key)
	up.attempts[me]++
	attempt := up.attempts[me]
	if attempt > 2 {
		return nil, nil
	}
	if _, ok := planNode(up.plan, me); !ok || attempt == 2 {
		trigger := metrics.TriggerFirst
		if up.plan != nil {
			trigger = metrics.TriggerReplan
		}
		spec, err := pl.unitSpec(pod, m, up, requiredLevel, unitSize)
		if err != nil {
			logger.V(3).Info("Cannot plan the unit", "pod", klog.KObj(pod), "unit", m.unitName(), "err", err)
			return nil, nil
		}
		spec.Held = pl.plans.holds(key)
		plan, err := pl.domains.PlanUnit(pl.model, spec)
		if err != nil {
			if !errors.Is(err, topology.ErrNoRoom) {
				logger.Error(err, "Planning the unit", "pod", klog.KObj(pod), "unit", m.unitName())
			} else {
				logger.V(3).Info("No domain has room for the unit", "pod", klog.KObj(pod), "unit", m.unitName(), "err", err)
			}
			return nil, nil
		}
		pl.plans.setPlan(key, up, plan, spec)
		metrics.Planned(metrics.ModeReplica, trigger)
		logger.V(4).Info("Planned the unit", "unit", m.unitName(), "pods", len(plan.Nodes), "level", pl.levelName(plan.Level),
			"domain", plan.Domain, "optimal", plan.Optimal(), "evaluated", plan.Evaluated)
	}
	node, ok := planNode(up.plan, me)
	if !ok {
		return nil, nil
	}
	return pl.plannedResult(pod, m, up, node, requiredLevel)
}

// plannedResult is what a pod planned on node hands Filter and Score, and
// the nodes PreFilter narrows it to: the planned node and the nearest
// fallbacks, within the required level.
func (pl *PDAffinity) plannedResult(pod *v1.Pod, m Member, up *unitPlan, node string, requiredLevel int) (*planned, *fwk.PreFilterResult) {
	me := podKey(pod)
	p := &planned{node: node, oppositeNodes: sets.New[string]()}
	for name, n := range up.plan.Nodes {
		if name == me {
			continue
		}
		role, bound, ok := pl.roleOf(name, m)
		if !ok {
			continue
		}
		p.peers[roleSlot(role)] = append(p.peers[roleSlot(role)], n)
		if _, reserved := up.reserved[name]; role == m.Role.opposite() && (reserved || bound != "") {
			// Placed already: a fallback must respect sameNode Forbid
			// beside it.
			p.oppositeNodes.Insert(n)
		}
	}
	names := sets.New(node)
	gpus := int(pl.gpuRequest(pod))
	levels := len(pl.levels)
	for level := levels - 1; level >= max(requiredLevel, 0) && names.Len() <= planFallbacks; level-- {
		for _, n := range pl.domains.NodesNear(level, node, gpus, planFallbacks+1-names.Len(), names.Has) {
			names.Insert(n)
		}
	}
	return p, &fwk.PreFilterResult{NodeNames: names}
}

// planNode is where a plan puts a pod; ok is false without a plan or an
// entry for the pod.
func planNode(plan *topology.Plan, pod string) (string, bool) {
	if plan == nil {
		return "", false
	}
	n, ok := plan.Nodes[pod]
	return n, ok && n != ""
}

// roleOf reads the role of one of the unit's pods, and the node it is bound
// to, from the informer.
func (pl *PDAffinity) roleOf(key string, m Member) (role Role, boundTo string, ok bool) {
	obj, found, err := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().GetIndexer().GetByKey(key)
	if err != nil || !found {
		return "", "", false
	}
	pod, isPod := obj.(*v1.Pod)
	if !isPod {
		return "", "", false
	}
	peer, isMember, err := pl.members.read(pod)
	if !isMember || err != nil || peer.Unit != m.Unit || peer.Group != m.Group {
		return "", "", false
	}
	return peer.Role, pod.Spec.NodeName, true
}

// placeholderPrefix names the pods a plan reserves room for before they
// exist; no pod key (namespace/name) starts with it.
const placeholderPrefix = "/expected-"

// unitSpec is the unit's pods as the informer knows them, with the pods
// already bound or reserved as anchors, and room for the pods the unit's
// size says are still to come: each asking what this pod asks, in the role
// the unit has fewer of.
func (pl *PDAffinity) unitSpec(pod *v1.Pod, m Member, up *unitPlan, requiredLevel, unitSize int) (topology.UnitSpec, error) {
	spec := topology.UnitSpec{RequiredLevel: requiredLevel, ForbidSameNode: pl.args.SameNode == config.SameNodeForbid, Usable: pl.src.Fresh()}
	objs, err := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().GetIndexer().ByIndex(podGroupIndex, podGroupKey(pod.Namespace, m.Group))
	if err != nil {
		return spec, err
	}
	seen := false
	for _, obj := range objs {
		p, ok := obj.(*v1.Pod)
		if !ok {
			continue
		}
		peer, ok, err := pl.members.read(p)
		if !ok || err != nil || peer.Unit != m.Unit {
			continue
		}
		if p.UID == pod.UID {
			seen = true
			p = pod
		}
		up2, err := pl.unitPod(p, peer, up)
		if err != nil {
			return spec, err
		}
		spec.Pods = append(spec.Pods, up2)
	}
	if !seen {
		// The informer may not have the pod yet.
		up2, err := pl.unitPod(pod, m, up)
		if err != nil {
			return spec, err
		}
		spec.Pods = append(spec.Pods, up2)
	}
	var roles [2]int
	for _, p := range spec.Pods {
		if p.Prefill {
			roles[0]++
		} else {
			roles[1]++
		}
	}
	me := spec.Pods[len(spec.Pods)-1]
	for i, p := range spec.Pods {
		if p.Name == podKey(pod) {
			me = spec.Pods[i]
		}
	}
	for i := 0; len(spec.Pods) < unitSize; i++ {
		expected := topology.UnitPod{Name: fmt.Sprintf("%s%d", placeholderPrefix, i), Prefill: roles[0] < roles[1], Request: me.Request}
		if expected.Prefill {
			roles[0]++
		} else {
			roles[1]++
		}
		spec.Pods = append(spec.Pods, expected)
	}
	return spec, nil
}

func (pl *PDAffinity) unitPod(p *v1.Pod, m Member, up *unitPlan) (topology.UnitPod, error) {
	req, err := pl.src.RequestOf(p, pl.gpuResource)
	if err != nil {
		return topology.UnitPod{}, err
	}
	node := p.Spec.NodeName
	if node == "" {
		node = up.reserved[podKey(p)]
	}
	return topology.UnitPod{Name: podKey(p), Prefill: m.Role == RolePrefill, Request: req, Node: node}, nil
}

// reservedAt records that the scheduler reserved a pod of the plan key.
func (pl *PDAffinity) reservedAt(pod *v1.Pod, key, node string) {
	pl.plans.mu.Lock()
	defer pl.plans.mu.Unlock()
	up := pl.plans.get(key)
	up.reserved[podKey(pod)] = node
	delete(up.attempts, podKey(pod))
}

func (pl *PDAffinity) unreserved(pod *v1.Pod, key string) {
	pl.plans.mu.Lock()
	defer pl.plans.mu.Unlock()
	if up := pl.plans.byUnit[key]; up != nil {
		delete(up.reserved, podKey(pod))
		pl.plans.open.Insert(key)
	}
}

// boundIn records a binding and forgets the plan once every pod it planned
// is bound.
func (pl *PDAffinity) boundIn(pod *v1.Pod, key string) {
	pl.plans.mu.Lock()
	defer pl.plans.mu.Unlock()
	delete(pl.plans.chunkOf, podKey(pod))
	up := pl.plans.byUnit[key]
	if up == nil {
		return
	}
	up.bound.Insert(podKey(pod))
	if up.plan == nil {
		return
	}
	for name := range up.plan.Nodes {
		if !strings.HasPrefix(name, placeholderPrefix) && !up.bound.Has(name) {
			return
		}
	}
	pl.plans.forget(key, up)
}

// forget drops a plan and its pods' chunk entries. Callers hold mu.
func (u *unitPlans) forget(key string, up *unitPlan) {
	delete(u.byUnit, key)
	u.open.Delete(key)
	for _, name := range up.chunk {
		if u.chunkOf[name] == key {
			delete(u.chunkOf, name)
		}
	}
}
