package pdaffinity

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	schedcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	plugintesting "k8s.io/kubernetes/pkg/scheduler/framework/plugins/testing"

	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// BenchmarkPlannedUnit places a 2P2D unit of TP=4 engines pod by pod as the
// scheduler does — PreFilter (the first pod plans the unit), Score on the
// nodes PreFilter narrowed to, Reserve — on generated clusters of three
// sizes; the cost per unit must not grow with the cluster.
func BenchmarkPlannedUnit(b *testing.B) {
	for _, n := range []int{500, 5000, 50000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			desc, err := bench.GenerateCluster(n)
			if err != nil {
				b.Fatal(err)
			}
			cluster := topology.NewCluster()
			var nodes []*v1.Node
			for _, node := range desc.Build(time.Now()) {
				nodes = append(nodes, node.Node)
				cluster.SetNodeLabels(node.Node.Name, node.Node.Labels)
				if node.Topology != nil {
					cluster.SetReport(node.Node.Name, topologysource.ReportOf(node.Topology))
				}
			}
			var pods []*v1.Pod
			var objs []runtime.Object
			for _, name := range []string{"u-p0", "u-p1", "u-d0", "u-d1"} {
				role := "prefill"
				if name[2] == 'd' {
					role = "decode"
				}
				pod := engine(name, role, "u", 4, LabelUnitSize, "4").Obj()
				pods = append(pods, pod)
				objs = append(objs, pod)
			}
			pl := plugintesting.SetupPluginWithInformers(context.Background(), b, New, defaultArgs(), schedcache.NewSnapshot(nil, nodes), objs).(*PDAffinity)
			pl.src = topologysource.New(time.Second)
			pl.domains = cluster.Domains(pl.levels)
			infos := map[string]*framework.NodeInfo{}
			for _, node := range nodes {
				ni := framework.NewNodeInfo()
				ni.SetNode(node)
				infos[node.Name] = ni
			}
			req := topology.GPURequest{Count: 4, Island: topology.IslandRequired, MaxNICLevel: topology.PCIeLevelSYS}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pl.plans = newUnitPlans()
				for _, pod := range pods {
					state := framework.NewCycleState()
					result, status := pl.PreFilter(ctx, state, pod, nil)
					if !status.IsSuccess() || result == nil {
						b.Fatalf("pod %s not narrowed: %v", pod.Name, status)
					}
					s, _ := readState(state)
					for name := range result.NodeNames {
						if _, st := pl.Score(ctx, state, pod, infos[name]); !st.IsSuccess() {
							b.Fatal(st.Message())
						}
					}
					if _, unfit, reason := cluster.Reserve(string(pod.UID), podKey(pod), s.planned.node, req, topology.Usable); reason != "" || unfit != nil {
						b.Fatalf("reserving %s on %s: %s %v", pod.Name, s.planned.node, reason, unfit)
					}
					_ = pl.Reserve(ctx, state, pod, s.planned.node)
				}
				for _, pod := range pods {
					cluster.Release(string(pod.UID))
					pl.assumed.remove(pod.UID)
				}
			}
		})
	}
}
