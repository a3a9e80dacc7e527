package nvlinktopo

import (
	"context"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// PreScore skips Score for pods PreFilter skipped (pods without GPUs).
func (pl *NVLinkTopo) PreScore(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	if _, err := readPreFilterState(cycleState); err != nil {
		return fwk.NewStatus(fwk.Skip)
	}
	if topologysource.Planned(cycleState) {
		// The unit's plan chose the node by island fit already.
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// Score prefers the node where the pod fills an NVLink island most tightly,
// then nearer NICs, then more NIC bandwidth per GPU, in [0, 100].
func (pl *NVLinkTopo) Score(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	s, err := readPreFilterState(cycleState)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	if fit, ok := s.fits.Load(nodeInfo.Node().Name); ok {
		return clampScore(fit.(topology.Fit).Score(pl.weights)), nil
	}
	fit, unfit, status := pl.fit(ctx, nodeInfo.Node().Name, pl.requestOn(s, nodeInfo.Node().Name))
	if status != nil || unfit != nil {
		// Filter let the node through without a fit (a pod that needs no
		// topology), or the picture changed in between.
		return 0, nil
	}
	return clampScore(fit.Score(pl.weights)), nil
}

// clampScore keeps a score in [0, MaxNodeScore] whatever went into it.
func clampScore(s int64) int64 {
	return max(0, min(fwk.MaxNodeScore, s))
}

// ScoreExtensions returns nil: scores are already in [0, 100].
func (pl *NVLinkTopo) ScoreExtensions() fwk.ScoreExtensions { return nil }
