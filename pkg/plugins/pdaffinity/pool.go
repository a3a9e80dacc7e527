package pdaffinity

import (
	"context"
	"fmt"
	"math"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/tandem-sched/tandem/apis/config"
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
func (pl *PDAffinity) poolCandidates(ctx context.Context, pod *v1.Pod, m Member, s *preFilterState) *framework.PreFilterResult {
	if pl.domains == nil {
		return nil
	}
	gpus := int(gpuRequest(pod, pl.gpuResource))
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
			return nil
		}
		return &framework.PreFilterResult{NodeNames: names}
	}
	if s.requiredLevel >= 0 {
		// Nothing to be near yet: any node may start the pool.
		return nil
	}
	req, err := pl.src.RequestOf(pod, pl.gpuResource)
	if err != nil {
		return nil
	}
	me := topology.UnitPod{Name: podKey(pod), Prefill: m.Role == RolePrefill, Request: req}
	spec := topology.UnitSpec{Pods: []topology.UnitPod{me}, RequiredLevel: -1,
		ForbidSameNode: pl.args.SameNode == config.SameNodeForbid, Usable: pl.src.Fresh()}
	for i := range partnersPerPod(m.Role, s.ratio) {
		spec.Pods = append(spec.Pods, topology.UnitPod{Name: fmt.Sprintf("%spartner-%d", placeholderPrefix, i), Prefill: !me.Prefill, Request: req})
	}
	plan, err := pl.domains.PlanUnit(pl.model, spec)
	if err != nil {
		klog.FromContext(ctx).V(4).Info("No room for a pool's first pair", "pod", klog.KObj(pod), "err", err)
		return nil
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
	return &framework.PreFilterResult{NodeNames: names}
}
