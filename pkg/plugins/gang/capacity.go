package gang

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// capacityShortfall returns what of need the nodes' free capacity cannot
// hold, or nil when it can. A node's free capacity is its allocatable minus
// what its pods request, with the group's own pods (already placed or
// assumed) taken off, as Coscheduling counts it. Node by node, stopping
// once need is met.
func capacityShortfall(logger klog.Logger, nodes []fwk.NodeInfo, need v1.ResourceList, k groupKey) v1.ResourceList {
	remaining := make(map[v1.ResourceName]int64, len(need))
	for name, q := range need {
		if name == v1.ResourceCPU {
			remaining[name] = q.MilliValue()
		} else {
			remaining[name] = q.Value()
		}
	}
	for _, ni := range nodes {
		if ni == nil || ni.Node() == nil {
			continue
		}
		ni = withoutGroup(logger, ni, k)
		for name, left := range remaining {
			if left <= 0 {
				continue
			}
			if free := freeOf(ni, name); free > 0 {
				remaining[name] = left - free
			}
		}
		if allMet(remaining) {
			return nil
		}
	}
	short := v1.ResourceList{}
	for name, left := range remaining {
		if left <= 0 {
			continue
		}
		if name == v1.ResourceCPU {
			short[name] = *resource.NewMilliQuantity(left, resource.DecimalSI)
		} else {
			short[name] = *resource.NewQuantity(left, need[name].Format)
		}
	}
	return short
}

func allMet(remaining map[v1.ResourceName]int64) bool {
	for _, left := range remaining {
		if left > 0 {
			return false
		}
	}
	return true
}

// withoutGroup is ni, or a copy of it without the group's pods when it
// holds some (the rare case: only nodes that hold the group are copied).
func withoutGroup(logger klog.Logger, ni fwk.NodeInfo, k groupKey) fwk.NodeInfo {
	var clone fwk.NodeInfo
	for _, pi := range ni.GetPods() {
		p := pi.GetPod()
		if p == nil || p.Namespace != k.namespace || p.Labels[LabelPodGroup] != k.name {
			continue
		}
		if clone == nil {
			clone = ni.Snapshot()
		}
		if err := clone.RemovePod(logger, p); err != nil {
			logger.V(4).Info("Could not take a group pod off a node's capacity", "pod", klog.KObj(p), "err", err)
		}
	}
	if clone == nil {
		return ni
	}
	return clone
}

// freeOf is the node's free amount of one resource, CPU in millicores.
func freeOf(ni fwk.NodeInfo, name v1.ResourceName) int64 {
	alloc, req := ni.GetAllocatable(), ni.GetRequested()
	switch name {
	case v1.ResourceCPU:
		return alloc.GetMilliCPU() - req.GetMilliCPU()
	case v1.ResourceMemory:
		return alloc.GetMemory() - req.GetMemory()
	case v1.ResourceEphemeralStorage:
		return alloc.GetEphemeralStorage() - req.GetEphemeralStorage()
	case v1.ResourcePods:
		return int64(alloc.GetAllowedPodNumber() - len(ni.GetPods()))
	}
	a, ok := alloc.GetScalarResources()[name]
	if !ok {
		return 0
	}
	return a - req.GetScalarResources()[name]
}

// formatResources lists resources by name: "cpu 4, nvidia.com/gpu 128".
func formatResources(rl v1.ResourceList) string {
	names := make([]string, 0, len(rl))
	for name := range rl {
		names = append(names, string(name))
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		q := rl[v1.ResourceName(name)]
		parts[i] = fmt.Sprintf("%s %s", name, q.String())
	}
	return strings.Join(parts, ", ")
}
