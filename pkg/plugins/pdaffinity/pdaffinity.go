// Package pdaffinity is the scheduler plugin that places each decode pod where
// the KV cache from its prefill travels the fastest path, and each prefill
// near its decodes, over every topology level at once: NVLink domain, leaf,
// spine, zone. It handles fixed xPyD units (replica mode) and prefill and
// decode pools that scale apart (pool mode).
package pdaffinity

import (
	"context"
	"fmt"
	"math"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/cache"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/kubernetes/pkg/scheduler/util"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/apis/config/validation"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Name is the plugin's name in the scheduler configuration.
const Name = "PDAffinity"

const preFilterStateKey fwk.StateKey = "PreFilter" + Name

// Pod annotations.
const (
	// AnnotationRequiredLevel makes locality hard for one pod: a level name
	// (e.g. leaf) the pod must share with its group's placed pods.
	AnnotationRequiredLevel = "tandem.dev/required-level"
	// AnnotationPDRatio sets a pool's target prefill:decode ratio, e.g. "1:2".
	AnnotationPDRatio = "tandem.dev/pd-ratio"
)

var (
	_ framework.PreFilterPlugin   = &PDAffinity{}
	_ framework.FilterPlugin      = &PDAffinity{}
	_ framework.PreScorePlugin    = &PDAffinity{}
	_ framework.ScorePlugin       = &PDAffinity{}
	_ framework.ReservePlugin     = &PDAffinity{}
	_ framework.BindPlugin        = &PDAffinity{}
	_ framework.PostBindPlugin    = &PDAffinity{}
	_ framework.EnqueueExtensions = &PDAffinity{}
)

// PDAffinity places prefill and decode pods of one group close together.
type PDAffinity struct {
	args         config.PDAffinityArgs
	levels       topology.Levels
	model        topology.CostModel
	gpuResource  v1.ResourceName
	balanceLevel int
	// nvlinkLevel is the index of the nvlink-domain level, or -1.
	nvlinkLevel int
	members     *memberReader
	paths       *pathCache
	handle      framework.Handle
	podGroups   pglisters.PodGroupLister
	// src and domains are the shared placement model; nil in New, which
	// then places each pod on its own, without plans.
	src     *topologysource.Source
	domains *topology.DomainIndex
	plans   *unitPlans
	assumed *assumedPods
}

// NewFactory returns the plugin factory the scheduler registers; PodGroups,
// which size xPyD units, are read through src.
func NewFactory(src *topologysource.Source) frameworkruntime.PluginFactory {
	return func(ctx context.Context, obj runtime.Object, h framework.Handle) (framework.Plugin, error) {
		pl, err := newPlugin(obj, h)
		if err != nil {
			return nil, err
		}
		if pl.podGroups, err = src.PodGroups(ctx, h.KubeConfig()); err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		cluster, err := src.Model(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		pl.src, pl.domains = src, cluster.Domains(pl.levels)
		if _, err := h.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj interface{}) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if pod, ok := obj.(*v1.Pod); ok {
					pl.assumed.remove(pod.UID)
				}
			},
		}); err != nil {
			return nil, fmt.Errorf("%s: watching pod deletions: %w", Name, err)
		}
		return pl, nil
	}
}

// New builds the plugin without PodGroup sizes: units are sized by the
// tandem.dev/unit-size label alone.
func New(_ context.Context, obj runtime.Object, h framework.Handle) (framework.Plugin, error) {
	return newPlugin(obj, h)
}

func newPlugin(obj runtime.Object, h framework.Handle) (*PDAffinity, error) {
	args, ok := obj.(*config.PDAffinityArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type PDAffinityArgs, got %T", Name, obj)
	}
	path := field.NewPath("pluginConfig").Key(Name).Child("args")
	if err := validation.ValidatePDAffinityArgs(path, args); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	levels, err := args.ResolvedLevels()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	presets := args.LabelPresets
	if presets == nil {
		presets = LabelPresetNames()
	}
	for i, name := range presets {
		if _, ok := labelPresets[name]; !ok {
			return nil, fmt.Errorf("%s: %w", Name, field.NotSupported(path.Child("labelPresets").Index(i), name, LabelPresetNames()))
		}
	}
	members, err := newMemberReader(presets)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	model := topology.DefaultCostModel()
	model.Levels = levels
	pl := &PDAffinity{
		args:         *args,
		levels:       levels,
		model:        model,
		gpuResource:  v1.ResourceName(args.GPUResourceName),
		balanceLevel: balanceLevel(levels),
		nvlinkLevel:  nvlinkLevel(levels),
		members:      members,
		paths:        newPathCache(levels),
		handle:       h,
		plans:        newUnitPlans(),
		assumed:      newAssumedPods(),
	}
	if h != nil {
		if err := pl.indexPodsByGroup(); err != nil {
			return nil, fmt.Errorf("%s: indexing pods by group: %w", Name, err)
		}
	}
	return pl, nil
}

// balanceLevel is where pool mode balances the prefill:decode ratio: the
// leaf when there is one, else the finest level.
func balanceLevel(levels topology.Levels) int {
	if i, ok := levels.Index(topology.LevelLeaf); ok {
		return i
	}
	return len(levels) - 1
}

func nvlinkLevel(levels topology.Levels) int {
	if i, ok := levels.Index(topology.LevelNVLinkDomain); ok {
		return i
	}
	return -1
}

// Name returns the plugin's name.
func (pl *PDAffinity) Name() string { return Name }

type preFilterState struct {
	member Member
	// requiredLevel is the level index the pod must share with its group,
	// or -1.
	requiredLevel int
	// ratio is the pool's target prefill share, in (0, 1).
	ratio float64
	index *groupIndex
	// Filter's reasons for a required level, worded once per cycle so that
	// the pod's event counts nodes per reason instead of listing each one.
	outsideReason, capacityReason string
	// planned is set for a replica unit's pod placed by its unit's plan;
	// index is then nil.
	planned *planned
}

// Clone returns the state itself. Preemption's dry runs, which clone to add
// and remove pods, do not change a P/D group's placement.
func (s *preFilterState) Clone() fwk.StateData { return s }

// PreFilter reads the pod's role and group once per cycle and indexes its
// group's placed pods by domain. Pods without a role are skipped; pods with
// malformed labels or annotations stay unschedulable with a message that
// names the label, rather than being placed as if unlabelled.
func (pl *PDAffinity) PreFilter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	member, ok, err := pl.members.read(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if err != nil {
		klog.FromContext(ctx).V(3).Info("Malformed P/D labels", "pod", klog.KObj(pod), "err", err)
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
			// Coscheduling reports the missing PodGroup.
		case err != nil:
			return nil, fwk.AsStatus(fmt.Errorf("reading PodGroup %s/%s: %w", pod.Namespace, member.PodGroup, err))
		default:
			unitSize = int(pg.Spec.MinMember)
		}
	}
	if member.Unit != "" {
		if p, result := pl.planFor(ctx, pod, member, s.requiredLevel, unitSize); p != nil {
			s.planned = p
			cycleState.Write(preFilterStateKey, s)
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
	s.index = pl.buildIndex(pod, member, nodes, gpuRequest(pod, pl.gpuResource), unitSize, unitRoles)
	if s.requiredLevel >= 0 {
		level := pl.levels[s.requiredLevel].Name
		s.capacityReason = fmt.Sprintf("%s has too few free GPUs: unit %s needs %d in one %s (%s=%s)",
			level, member.unitName(), s.index.remaining, level, AnnotationRequiredLevel, level)
	}
	cycleState.Write(preFilterStateKey, s)
	if member.Unit == "" {
		return pl.poolCandidates(ctx, pod, member, s), nil
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
func (pl *PDAffinity) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// poolRatio is the target prefill share of a pool: from the annotation, or
// from the group's own prefill and decode pod counts, scheduled or not.
func (pl *PDAffinity) poolRatio(pod *v1.Pod, m Member) (float64, error) {
	if v, ok := pod.Annotations[AnnotationPDRatio]; ok {
		var p, d int
		if _, err := fmt.Sscanf(v, "%d:%d", &p, &d); err != nil || p < 1 || d < 1 || fmt.Sprintf("%d:%d", p, d) != v {
			return 0, fmt.Errorf("pod annotation %s=%q is not a ratio of positive whole numbers like 1:2", AnnotationPDRatio, v)
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

func gpuRequest(pod *v1.Pod, name v1.ResourceName) int64 {
	q, ok := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})[name]
	if !ok {
		return 0
	}
	return q.Value()
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

// PreScore skips Score for pods PreFilter skipped.
func (pl *PDAffinity) PreScore(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	if _, err := readState(cycleState); err != nil {
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// Score rates a node by the modeled KV-transfer bandwidth between it and the
// pods the incoming pod will exchange KV caches with, on a log scale from
// the cross-zone rate (0) to the NVLink rate (100). The first pod of a unit
// is rated by the tightest domain that could hold the whole unit; a pool pod
// also by how far it moves the node's leaf toward the pool's P:D ratio.
func (pl *PDAffinity) Score(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	s, err := readState(cycleState)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	node := nodeInfo.Node()
	if p := s.planned; p != nil {
		return pl.plannedScore(p, s.member, node.Name), nil
	}
	np := pl.paths.get(node)
	g := s.index

	var bandwidth float64
	switch {
	case g.sameRole && g.partnerGPUs > 0:
		// Only the unit's own role is placed: keep near it, and where the
		// partner of the other role can still join on NVLink.
		near := pl.bandwidthScore(pl.bandwidthTo(g, node.Name, np))
		var pairing int64
		if pl.partnerFits(g, np) {
			pairing = framework.MaxNodeScore
		}
		return (near + pairing) / 2, nil
	case g.targetNodes.Len() > 0:
		bandwidth = pl.bandwidthTo(g, node.Name, np)
	case g.remaining > 0:
		// The unit's first pod: the finest domain that can hold the whole
		// unit is where the rest will follow it.
		level, free := finestHolding(g.freeGPUs, np.ids, g.remaining)
		if level < 0 {
			return 0, nil
		}
		score := pl.bandwidthScore(pl.levels[level].Bandwidth)
		// Among equals, the tightest domain keeps bigger ones whole.
		tight := float64(g.remaining) / float64(free)
		return int64(math.Round(0.9*float64(score) + 10*tight)), nil
	default:
		return 0, nil
	}
	score := float64(pl.bandwidthScore(bandwidth))
	if s.member.Unit == "" && pl.balanceLevel >= 0 {
		score = (score + pl.ratioScore(s, np)) / 2
	}
	return int64(math.Round(score)), nil
}

// bandwidthTo is the modeled bandwidth from the node to its nearest target.
func (pl *PDAffinity) bandwidthTo(g *groupIndex, nodeName string, np *nodePath) float64 {
	if g.targetNodes.Has(nodeName) && pl.args.SameNode == config.SameNodePrefer && !g.sameRole {
		return pl.levels[len(pl.levels)-1].Bandwidth
	}
	level := finestShared(g.targets, np.ids)
	if level < 0 {
		return pl.model.Bandwidth(topology.PathNone)
	}
	class := topology.PathClass(pl.levels[level].Name)
	if level < len(pl.levels)-1 && pl.levels[len(pl.levels)-1].Name == topology.LevelNVLinkDomain && !np.gpuDirect {
		class = topology.PathHostBounce
	}
	return pl.model.Bandwidth(class)
}

// bandwidthScore maps a bandwidth onto [0, 100] on a log scale.
func (pl *PDAffinity) bandwidthScore(bw float64) int64 {
	lo := pl.model.CrossBandwidth
	hi := pl.levels[len(pl.levels)-1].Bandwidth
	if bw <= lo || hi <= lo {
		return 0
	}
	return int64(math.Round(float64(framework.MaxNodeScore) * math.Log(bw/lo) / math.Log(hi/lo)))
}

// ratioScore is 100 when placing the pod brings the node's leaf exactly to
// the pool's prefill share, falling linearly with the distance from it.
func (pl *PDAffinity) ratioScore(s *preFilterState, np *nodePath) float64 {
	id := np.ids[pl.balanceLevel]
	if id == "" {
		return 0
	}
	var c [2]int
	if counts := s.index.roleCounts[id]; counts != nil {
		c = *counts
	}
	c[roleSlot(s.member.Role)]++
	share := float64(c[0]) / float64(c[0]+c[1])
	return float64(framework.MaxNodeScore) * (1 - math.Abs(share-s.ratio))
}

// ScoreExtensions returns nil: scores are already in [0, 100].
func (pl *PDAffinity) ScoreExtensions() framework.ScoreExtensions { return nil }

// EventsToRegister asks for a retry when a pod of the group binds (a decode
// waiting on its unit), when a pod goes away, when a node appears, and when a
// rejected pod's own labels change.
func (pl *PDAffinity) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add}, QueueingHintFn: pl.isSchedulableAfterPeerAdded},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.UpdatePodLabel}, QueueingHintFn: pl.isSchedulableAfterOwnLabelChange},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeLabel}},
	}, nil
}

func (pl *PDAffinity) isSchedulableAfterPeerAdded(logger klog.Logger, pod *v1.Pod, _, newObj interface{}) (fwk.QueueingHint, error) {
	_, added, err := util.As[*v1.Pod](nil, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if added.Spec.NodeName == "" || added.Namespace != pod.Namespace {
		return fwk.QueueSkip, nil
	}
	m, ok, err := pl.members.read(pod)
	if !ok || err != nil {
		return fwk.QueueSkip, nil
	}
	peer, ok, err := pl.members.read(added)
	if !ok || err != nil || peer.Group != m.Group {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A pod of the group was placed", "pod", klog.KObj(pod), "peer", klog.KObj(added))
	return fwk.Queue, nil
}

// isSchedulableAfterOwnLabelChange requeues a rejected pod whose own role,
// group or unit labels changed, the only fix for malformed ones.
func (pl *PDAffinity) isSchedulableAfterOwnLabelChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	oldPod, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newPod.UID != pod.UID {
		return fwk.QueueSkip, nil
	}
	if oldPod != nil && pl.sameMembership(oldPod, newPod) {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("P/D labels of the rejected pod changed", "pod", klog.KObj(pod))
	return fwk.Queue, nil
}

func (pl *PDAffinity) sameMembership(a, b *v1.Pod) bool {
	ma, oka, erra := pl.members.read(a)
	mb, okb, errb := pl.members.read(b)
	return ma == mb && oka == okb && fmt.Sprint(erra) == fmt.Sprint(errb)
}

// plannedScore is full marks on the planned node and, on a fallback, the
// modeled bandwidth to the nearest of the unit's pods of the other role (of
// its own role while none is planned).
func (pl *PDAffinity) plannedScore(p *planned, m Member, node string) int64 {
	if node == p.node {
		return framework.MaxNodeScore
	}
	peers := p.peers[roleSlot(m.Role.opposite())]
	if len(peers) == 0 {
		peers = p.peers[roleSlot(m.Role)]
	}
	best := pl.model.CrossBandwidth
	for _, peer := range peers {
		best = max(best, pl.model.Bandwidth(pl.domains.Classify(node, peer)))
	}
	// Never above a planned node's score.
	return min(pl.bandwidthScore(best), framework.MaxNodeScore-1)
}

// Reserve records a unit's pod as placed, for the plans of its unit's other
// pods.
func (pl *PDAffinity) Reserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	s, err := readState(cycleState)
	if err != nil {
		return nil
	}
	pl.assumed.add(pod, node)
	if s.member.Unit != "" {
		pl.reservedAt(pod, s.member, node)
	}
	return nil
}

// Unreserve forgets the reservation.
func (pl *PDAffinity) Unreserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) {
	s, err := readState(cycleState)
	if err != nil {
		return
	}
	pl.assumed.remove(pod.UID)
	if s.member.Unit != "" {
		pl.unreserved(pod, s.member)
	}
}
