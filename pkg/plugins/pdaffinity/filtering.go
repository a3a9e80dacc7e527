package pdaffinity

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
)

// PreFilter reads the pod's role and group once per cycle and indexes its
// group's placed pods by domain. Pods without a role are skipped; pods with
// malformed labels or annotations stay unschedulable with a message that
// names the label, rather than being placed as if unlabelled.
func (pl *PDAffinity) PreFilter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	member, ok, err := pl.members.read(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if err != nil {
		klog.FromContext(ctx).V(3).Info("Malformed P/D labels", "pod", klog.KObj(pod), "err", err)
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if _, err := pl.gpuCount(pod); err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	s := &preFilterState{member: member, requiredLevel: -1, ratio: 0.5}
	if v, ok := pod.Annotations[AnnotationRequiredLevel]; ok {
		i, found := pl.levels.Index(v)
		if !found {
			return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("pod annotation %s=%q is not a topology level; levels are %s", AnnotationRequiredLevel, v, pl.levelNames()))
		}
		s.requiredLevel = i
		s.outsideReason = fmt.Sprintf("node is outside the %[1]s of group %[2]s's placed pods (%[3]s=%[1]s)", v, member.Group, AnnotationRequiredLevel)
	}
	unitSize := member.UnitSize
	if member.PodGroup != "" && unitSize == 0 && pl.podGroups != nil {
		pg, err := pl.podGroups.PodGroups(pod.Namespace).Get(member.PodGroup)
		switch {
		case apierrors.IsNotFound(err):
			// Gang reports the missing PodGroup.
		case err != nil:
			return nil, fwk.AsStatus(fmt.Errorf("reading PodGroup %s/%s: %w", pod.Namespace, member.PodGroup, err))
		case pg.Spec.MinMember > MaxUnitSize:
			return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("PodGroup %s/%s of pod %s: minMember %d is more than %d pods",
				pod.Namespace, member.PodGroup, pod.Name, pg.Spec.MinMember, MaxUnitSize))
		default:
			unitSize = int(pg.Spec.MinMember)
		}
	}
	if member.Unit != "" {
		s.planKey = pod.Namespace + "/" + member.Unit
		if p, result := pl.planFor(ctx, pod, member, s.requiredLevel, unitSize); p != nil {
			s.planned = p
			cycleState.Write(preFilterStateKey, s)
			cycleState.Write(topologysource.PlanStateKey, &topologysource.PlanState{Node: p.node})
			return result, nil
		}
	}
	var unitRoles *[2]int
	if member.Unit == "" {
		if s.ratio, err = pl.poolRatio(pod, member); err != nil {
			return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
		}
	} else {
		unitRoles = pl.unitRoles(pod, member)
	}
	s.index = pl.buildIndex(pod, member, nodes, pl.gpuRequest(pod), unitSize, unitRoles)
	if s.requiredLevel >= 0 {
		level := pl.levels[s.requiredLevel].Name
		s.capacityReason = fmt.Sprintf("%s has too few free GPUs: unit %s needs %d in one %s (%s=%s)",
			level, member.unitName(), s.index.remaining, level, AnnotationRequiredLevel, level)
	}
	cycleState.Write(preFilterStateKey, s)
	if member.Unit == "" {
		if result := pl.poolPlan(ctx, pod, member, s); result != nil {
			cycleState.Write(topologysource.PlanStateKey, &topologysource.PlanState{Node: s.planned.node})
			return result, nil
		}
		return pl.poolCandidates(ctx, pod, member, s)
	}
	return nil, nil
}

func (pl *PDAffinity) levelNames() string {
	names := make([]string, len(pl.levels))
	for i, l := range pl.levels {
		names[i] = l.Name
	}
	return strings.Join(names, ", ")
}

// PreFilterExtensions returns nil: see Clone.
func (pl *PDAffinity) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// poolRatio is the target prefill share of a pool: from the annotation, or
// from the group's own prefill and decode pod counts, scheduled or not.
func (pl *PDAffinity) poolRatio(pod *v1.Pod, m Member) (float64, error) {
	if v, ok := pod.Annotations[AnnotationPDRatio]; ok {
		p, d, err := parsePDRatio(pod, v)
		if err != nil {
			return 0, err
		}
		return float64(p) / float64(p+d), nil
	}
	counts := pl.roleCounts(pod, m, func(peer Member) bool { return peer.Unit == "" })
	if counts == nil || counts[0] == 0 || counts[1] == 0 {
		return 0.5, nil
	}
	return float64(counts[0]) / float64(counts[0]+counts[1]), nil
}

// unitRoles counts the unit's pods of each role, placed or not, or returns
// nil when the pods cannot be listed.
func (pl *PDAffinity) unitRoles(pod *v1.Pod, m Member) *[2]int {
	counts := pl.roleCounts(pod, m, func(peer Member) bool { return peer.Unit == m.Unit })
	if counts != nil {
		counts[roleSlot(m.Role)] = max(counts[roleSlot(m.Role)], 1)
	}
	return counts
}

// podGroupIndex indexes the scheduler's pod informer by namespace/group, so
// that counting a group's pods reads the group, not the namespace.
const podGroupIndex = "tandem.dev/pd-group"

func podGroupKey(namespace, group string) string { return namespace + "/" + group }

// indexPodsByGroup adds podGroupIndex to the scheduler's pod informer, once
// for all profiles that share it.
func (pl *PDAffinity) indexPodsByGroup() error {
	informer := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer()
	if _, ok := informer.GetIndexer().GetIndexers()[podGroupIndex]; ok {
		return nil
	}
	return informer.AddIndexers(cache.Indexers{podGroupIndex: func(obj interface{}) ([]string, error) {
		pod, ok := obj.(*v1.Pod)
		if !ok {
			return nil, nil
		}
		m, ok, err := pl.members.read(pod)
		if !ok || err != nil {
			return nil, nil
		}
		return []string{podGroupKey(pod.Namespace, m.Group)}, nil
	}})
}

// roleCounts counts the pods of the pod's group that match, by role, placed
// or not; nil when they cannot be read.
func (pl *PDAffinity) roleCounts(pod *v1.Pod, m Member, match func(Member) bool) *[2]int {
	if pl.handle == nil {
		return nil
	}
	objs, err := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().GetIndexer().ByIndex(podGroupIndex, podGroupKey(pod.Namespace, m.Group))
	if err != nil {
		return nil
	}
	var counts [2]int
	for _, obj := range objs {
		p, ok := obj.(*v1.Pod)
		if !ok {
			continue
		}
		if peer, ok, err := pl.members.read(p); ok && err == nil && peer.Group == m.Group && match(peer) {
			counts[roleSlot(peer.Role)]++
		}
	}
	return &counts
}

// gpuRequest is the GPUs the pod requests, by the extended resource or its
// ResourceClaims. PreFilter refuses a pod that asks for more than
// MaxPodGPUs or whose claims cannot be read; any other pod (a placed peer)
// counts as asking for that many.
func (pl *PDAffinity) gpuRequest(pod *v1.Pod) int64 {
	n, err := pl.gpuCount(pod)
	if err != nil {
		return topologysource.MaxPodGPUs
	}
	return int64(n)
}

// gpuCount counts the pod's GPUs as the placement model's source does
// (ResourceClaims included), or by the extended resource alone without one.
func (pl *PDAffinity) gpuCount(pod *v1.Pod) (int, error) {
	if pl.src == nil {
		return topologysource.GPUCount(pod, pl.gpuResource)
	}
	return pl.src.GPUCount(pod, pl.gpuResource)
}

func readState(cycleState fwk.CycleState) (*preFilterState, error) {
	data, err := cycleState.Read(preFilterStateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %q from cycle state: %w", preFilterStateKey, err)
	}
	s, ok := data.(*preFilterState)
	if !ok {
		return nil, fmt.Errorf("%+v cannot be converted to pdaffinity.preFilterState", data)
	}
	return s, nil
}

const reasonSameNode = "node already runs a peer of the other role and sameNode is Forbid"

// Filter enforces what is hard: the same-node policy Forbid, and a level
// the pod requires to share with its group.
func (pl *PDAffinity) Filter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s, err := readState(cycleState)
	if err != nil {
		return fwk.AsStatus(err)
	}
	node := nodeInfo.Node()
	if p := s.planned; p != nil {
		// The plan respects the required level; the fallbacks lie inside
		// its domain.
		if pl.args.SameNode == config.SameNodeForbid && p.oppositeNodes.Has(node.Name) {
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reasonSameNode)
		}
		return nil
	}
	g := s.index
	if pl.args.SameNode == config.SameNodeForbid && g.targetNodes.Has(node.Name) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reasonSameNode)
	}
	if s.requiredLevel < 0 {
		return nil
	}
	r := s.requiredLevel
	id := pl.paths.get(node).ids[r]
	if id == "" {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("node has no %s label, required by %s=%s", pl.levels[r].Key, AnnotationRequiredLevel, pl.levels[r].Name))
	}
	peers := g.targets
	if s.member.Unit != "" {
		peers = g.unitMembers
	}
	if g.hasAny(peers, r) {
		if peers[r][id] == 0 {
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, s.outsideReason)
		}
		return nil
	}
	if g.remaining > 0 && g.freeGPUs(r, id) < g.remaining {
		return fwk.NewStatus(fwk.Unschedulable, s.capacityReason)
	}
	return nil
}

func (g *groupIndex) hasAny(counts []map[string]int, level int) bool {
	return len(counts[level]) > 0
}
