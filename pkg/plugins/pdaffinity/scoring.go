package pdaffinity

import (
	"context"
	"math"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/pkg/topology"
)

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
	return clampScore(pl.score(s, nodeInfo)), nil
}

// score is Score's rating before it is clamped to [0, 100].
func (pl *PDAffinity) score(s *preFilterState, nodeInfo fwk.NodeInfo) int64 {
	node := nodeInfo.Node()
	if p := s.planned; p != nil {
		return pl.plannedScore(p, s.member, node.Name)
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
			pairing = fwk.MaxNodeScore
		}
		return (near + pairing) / 2
	case g.targetNodes.Len() > 0:
		bandwidth = pl.bandwidthTo(g, node.Name, np)
	case g.remaining > 0:
		// The unit's first pod: the finest domain that can hold the whole
		// unit is where the rest will follow it.
		level, free := finestHolding(g.freeGPUs, np.ids, g.remaining)
		if level < 0 {
			return 0
		}
		score := pl.bandwidthScore(pl.levels[level].Bandwidth)
		// Among equals, the tightest domain keeps bigger ones whole.
		tight := float64(g.remaining) / float64(free)
		return int64(math.Round(0.9*float64(score) + 10*tight))
	default:
		return 0
	}
	score := float64(pl.bandwidthScore(bandwidth))
	if s.member.Unit == "" && pl.balanceLevel >= 0 {
		score = (score + pl.ratioScore(s, np)) / 2
	}
	return int64(math.Round(score))
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
	return int64(math.Round(float64(fwk.MaxNodeScore) * math.Log(bw/lo) / math.Log(hi/lo)))
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
	return float64(fwk.MaxNodeScore) * (1 - math.Abs(share-s.ratio))
}

// ScoreExtensions returns nil: scores are already in [0, 100].
func (pl *PDAffinity) ScoreExtensions() fwk.ScoreExtensions { return nil }

// plannedScore is full marks on the planned node and, on a fallback, the
// modeled bandwidth to the nearest of the unit's pods of the other role (of
// its own role while none is planned).
func (pl *PDAffinity) plannedScore(p *planned, m Member, node string) int64 {
	if node == p.node {
		return fwk.MaxNodeScore
	}
	peers := p.peers[roleSlot(m.Role.opposite())]
	if len(peers) == 0 {
		peers = p.peers[roleSlot(m.Role)]
	}
	best := pl.model.CrossBandwidth
	for _, peer := range peers {
		best = max(best, pl.model.Bandwidth(pl.domains.Classify(node, peer)))
	}
	// A fallback takes at most half a planned node's score: it is there for
	// a planned node another plugin rejects, not to compete with it.
	return pl.bandwidthScore(best) / 2
}
