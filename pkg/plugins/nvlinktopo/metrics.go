package nvlinktopo

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/tandem-sched/tandem/pkg/metrics"
)

// modelState is what the scheduler's model gauges read at scrape time: the
// GPU nodes (those with the GPU resource allocatable, or a report) whose
// NodeTopology is missing, stale by this plugin's freshness rule, or
// invalid, and the GPUs the placement model's ledger holds. It walks the
// node lister once per scrape, never during a scheduling cycle.
func (pl *NVLinkTopo) modelState(nodes corelisters.NodeLister) func() metrics.ModelState {
	gpu := v1.ResourceName(pl.args.GPUResourceName)
	return func() metrics.ModelState {
		s := metrics.ModelState{Nodes: map[string]int{}, LedgerGPUs: pl.cluster.LedgerGPUs()}
		list, err := nodes.List(labels.Everything())
		if err != nil {
			return s
		}
		for _, node := range list {
			view, known := pl.cluster.Node(node.Name)
			q, hasGPUs := node.Status.Allocatable[gpu]
			if !(hasGPUs && !q.IsZero()) && !view.Reported {
				continue
			}
			switch {
			case !known || !view.Reported:
				s.Nodes[metrics.NodeTopologyMissing]++
			case view.Err != nil:
				s.Nodes[metrics.NodeTopologyInvalid]++
			case !pl.Fresh(node.Name, view.Heartbeat):
				s.Nodes[metrics.NodeTopologyStale]++
			}
		}
		return s
	}
}
