package config

import "github.com/tandem-sched/tandem/pkg/topology"

// ResolvedLevels returns the topology levels the args select: Levels when
// set, otherwise the LevelPreset's.
func (a *PDAffinityArgs) ResolvedLevels() (topology.Levels, error) {
	if len(a.Levels) == 0 {
		return topology.PresetLevels(a.LevelPreset)
	}
	out := make(topology.Levels, 0, len(a.Levels))
	for _, l := range a.Levels {
		out = append(out, topology.Level{Name: l.Name, Key: l.NodeLabel, Bandwidth: l.Bandwidth.AsApproximateFloat64(), Global: l.Global})
	}
	return out, nil
}
