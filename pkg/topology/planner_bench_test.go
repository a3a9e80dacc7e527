package topology_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// benchModel is the benchmark's generated cluster of n nodes (leaves of HGX
// boards and GB200 racks), a third of its GPUs held, scattered.
func benchModel(b *testing.B, n int) (*topology.Cluster, *topology.DomainIndex) {
	b.Helper()
	desc, err := bench.GenerateCluster(n)
	if err != nil {
		b.Fatal(err)
	}
	c := topology.NewCluster()
	v := c.Domains(topology.DefaultLevels())
	for i, node := range desc.Build(time.Now()) {
		c.SetNodeLabels(node.Node.Name, node.Node.Labels)
		if node.Topology == nil {
			continue
		}
		r := topologysource.ReportOf(node.Topology)
		if i%3 == 0 && len(r.GPUs) >= 4 {
			r.Allocations = append(r.Allocations, topology.Allocation{Pod: "other/held-" + node.Node.Name,
				GPUs: []string{r.GPUs[0].UUID, r.GPUs[1].UUID, r.GPUs[2].UUID}})
		}
		c.SetReport(node.Node.Name, r)
	}
	return c, v
}

// BenchmarkPlanUnit plans a 2P2D unit of TP=4 engines and reserves and
// releases its pods, at three cluster sizes: the per-unit cost must not
// grow with the cluster.
func BenchmarkPlanUnit(b *testing.B) {
	for _, n := range []int{500, 5000, 50000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			c, v := benchModel(b, n)
			model := topology.DefaultCostModel()
			spec := unit(unitPod("p0", true, 4), unitPod("p1", true, 4), unitPod("d0", false, 4), unitPod("d1", false, 4))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				plan, err := v.PlanUnit(model, spec)
				if err != nil {
					b.Fatal(err)
				}
				// Take the planned GPUs and give them back, so every
				// iteration changes the aggregates as a real unit does.
				for pod, node := range plan.Nodes {
					if _, unfit, reason := c.Reserve(pod, "ns/"+pod, node, req(4), topology.Usable); reason != "" || unfit != nil {
						b.Fatalf("reserving %s on %s: %s %v", pod, node, reason, unfit)
					}
				}
				for pod := range plan.Nodes {
					c.Release(pod)
				}
			}
		})
	}
}
