package pdaffinity

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// groupIndex is what one scheduling cycle knows about the pod's group, built
// once in PreFilter from the snapshot (placed and assumed pods), so that
// Filter and Score are O(levels) per node.
type groupIndex struct {
	// targets counts, per level and domain id, the pods the incoming pod
	// wants to be near: in replica mode its unit's placed members, the
	// opposite role first; in pool mode the group's opposite-role pods.
	targets []map[string]int
	// targetNodes are the nodes holding a target, for same-node policy.
	targetNodes sets.Set[string]
	// unitMembers counts per level and domain the unit's placed members of
	// either role, for a required level in replica mode.
	unitMembers []map[string]int
	placed      int
	// roleCounts are the group's placed prefill and decode pods per domain
	// at the balance level (pool mode).
	roleCounts map[string]*[2]int
	// freeGPUs per level and domain, and the GPUs the rest of the unit still
	// needs: the first pod of a unit looks ahead with them.
	freeGPUs  func(level int, id string) int64
	remaining int64
	// sameRole: the targets are the unit's pods of the pod's own role,
	// because none of the other role is placed yet.
	sameRole bool
	// partnerGPUs is what the pod's future partner of the other role needs
	// (0 when the unit has no such pod left to place), and podGPUs what the
	// pod itself needs: a node whose NVLink domain can take both lets the
	// pair share NVLink instead of stacking one role on a board.
	partnerGPUs, podGPUs int64
}

func newGroupIndex(levels int) *groupIndex {
	g := &groupIndex{targetNodes: sets.New[string](), roleCounts: map[string]*[2]int{}}
	for range levels {
		g.targets = append(g.targets, map[string]int{})
		g.unitMembers = append(g.unitMembers, map[string]int{})
	}
	return g
}

func addAt(m []map[string]int, ids []string) {
	for i, id := range ids {
		if id != "" {
			m[i][id]++
		}
	}
}

// placedPeer is one placed pod of the group and its node.
type placedPeer struct {
	pod  *v1.Pod
	node *v1.Node
}

// placedPeers lists the group's placed pods other than pod: with the
// shared model, from the pod informer's group index and this plugin's own
// reservations (O(group)); without it, by walking the snapshot.
func (pl *PDAffinity) placedPeers(pod *v1.Pod, m Member, nodes []fwk.NodeInfo) []placedPeer {
	var out []placedPeer
	if pl.domains != nil && pl.handle != nil {
		objs, err := pl.handle.SharedInformerFactory().Core().V1().Pods().Informer().GetIndexer().ByIndex(podGroupIndex, podGroupKey(pod.Namespace, m.Group))
		if err == nil {
			infos := pl.handle.SnapshotSharedLister().NodeInfos()
			for _, obj := range objs {
				p, ok := obj.(*v1.Pod)
				if !ok || p.UID == pod.UID {
					continue
				}
				nodeName := pl.assumed.nodeOf(p)
				if nodeName == "" {
					continue
				}
				if ni, err := infos.Get(nodeName); err == nil && ni.Node() != nil {
					out = append(out, placedPeer{pod: p, node: ni.Node()})
				}
			}
			return out
		}
	}
	for _, ni := range nodes {
		node := ni.Node()
		if node == nil {
			continue
		}
		for _, pi := range ni.GetPods() {
			if p := pi.GetPod(); p.Namespace == pod.Namespace && p.UID != pod.UID {
				out = append(out, placedPeer{pod: p, node: node})
			}
		}
	}
	return out
}

// buildIndex reads the group's placed pods once: for Filter and Score, and
// for the first pod of a unit the free GPUs of every domain.
func (pl *PDAffinity) buildIndex(pod *v1.Pod, m Member, nodes []fwk.NodeInfo, gpus int64, unitSize int, unitRoles *[2]int) *groupIndex {
	g := newGroupIndex(len(pl.levels))
	g.podGPUs = gpus
	var placedByRole [2]int
	var opposite, sameRole [][]string
	var oppositeNodes, sameNodes []string
	for _, pp := range pl.placedPeers(pod, m, nodes) {
		p, node := pp.pod, pp.node
		peer, ok, err := pl.members.read(p)
		if !ok || err != nil || peer.Group != m.Group {
			continue
		}
		np := pl.paths.get(node)
		if m.Unit != "" {
			if peer.Unit != m.Unit {
				continue
			}
			addAt(g.unitMembers, np.ids)
			g.placed++
			placedByRole[roleSlot(peer.Role)]++
		}
		if peer.Role == m.Role.opposite() {
			opposite = append(opposite, np.ids)
			oppositeNodes = append(oppositeNodes, node.Name)
		} else {
			sameRole = append(sameRole, np.ids)
			sameNodes = append(sameNodes, node.Name)
		}
		if pl.balanceLevel >= 0 {
			if id := np.ids[pl.balanceLevel]; id != "" {
				c := g.roleCounts[id]
				if c == nil {
					c = &[2]int{}
					g.roleCounts[id] = c
				}
				c[roleSlot(peer.Role)]++
			}
		}
	}
	// A unit keeps together even before its other role arrives.
	if len(opposite) == 0 && m.Unit != "" {
		opposite, oppositeNodes = sameRole, sameNodes
		g.sameRole = len(opposite) > 0
	}
	if m.Unit != "" && pl.nvlinkLevel >= 0 {
		other := roleSlot(m.Role.opposite())
		partnerLeft := placedByRole[other] == 0
		if unitRoles != nil {
			partnerLeft = unitRoles[other] > placedByRole[other]
		}
		if partnerLeft {
			g.partnerGPUs = gpus
		}
	}
	for i, ids := range opposite {
		addAt(g.targets, ids)
		g.targetNodes.Insert(oppositeNodes[i])
	}
	if m.Unit != "" && g.placed == 0 && unitSize > 1 {
		g.remaining = int64(unitSize) * gpus
	}
	if g.remaining > 0 || (g.sameRole && g.partnerGPUs > 0) {
		if pl.domains != nil {
			g.freeGPUs = pl.domainFreeGPUs
		} else {
			free := pl.freeGPUsPerDomain(nodes)
			g.freeGPUs = func(level int, id string) int64 { return free[level][id] }
		}
	}
	return g
}

// domainFreeGPUs reads a domain's free GPUs from the model's aggregates.
func (pl *PDAffinity) domainFreeGPUs(level int, id string) int64 {
	free, _, _ := pl.domains.FreeOf(level, id)
	return int64(free)
}

func roleSlot(r Role) int {
	if r == RolePrefill {
		return 0
	}
	return 1
}

func (pl *PDAffinity) freeGPUsPerDomain(nodes []fwk.NodeInfo) []map[string]int64 {
	free := make([]map[string]int64, len(pl.levels))
	for i := range free {
		free[i] = map[string]int64{}
	}
	for _, ni := range nodes {
		node := ni.Node()
		if node == nil {
			continue
		}
		f := ni.GetAllocatable().GetScalarResources()[pl.gpuResource] - ni.GetRequested().GetScalarResources()[pl.gpuResource]
		if f <= 0 {
			continue
		}
		for i, id := range pl.paths.get(node).ids {
			if id != "" {
				free[i][id] += f
			}
		}
	}
	return free
}

// finestShared is the finest level at which the node's domain holds at
// least one of counts, or -1.
func finestShared(counts []map[string]int, ids []string) int {
	for i := len(ids) - 1; i >= 0; i-- {
		if ids[i] != "" && counts[i][ids[i]] > 0 {
			return i
		}
	}
	return -1
}

// finestHolding is the finest level at which the node's domain has at least
// need free GPUs, and how many it has there; -1 when none has.
func finestHolding(free func(level int, id string) int64, ids []string, need int64) (int, int64) {
	for i := len(ids) - 1; i >= 0; i-- {
		if ids[i] == "" {
			continue
		}
		if f := free(i, ids[i]); f >= need {
			return i, f
		}
	}
	return -1, 0
}

func (pl *PDAffinity) levelName(i int) string {
	if i < 0 {
		return string(topology.PathNone)
	}
	return pl.levels[i].Name
}

// partnerFits says whether the node's NVLink domain has room for the pod
// and one engine of the other role beside it.
func (pl *PDAffinity) partnerFits(g *groupIndex, np *nodePath) bool {
	id := np.ids[pl.nvlinkLevel]
	return id != "" && g.freeGPUs(pl.nvlinkLevel, id)-g.podGPUs >= g.partnerGPUs
}
