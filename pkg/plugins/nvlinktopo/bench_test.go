package nvlinktopo

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	fwk "k8s.io/kube-scheduler/framework"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/noderesources"
	plugintesting "k8s.io/kubernetes/pkg/scheduler/framework/plugins/testing"
	"k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/tandem-sched/tandem/apis/config"
	configv1 "github.com/tandem-sched/tandem/apis/config/v1"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
)

// benchCluster is 5,000 GPU nodes in realistic proportions, a fifth of them
// partly allocated.
func benchCluster(b *testing.B) []clusterdesc.Node {
	b.Helper()
	var desc string
	for i := 0; i < 50; i++ {
		desc += fmt.Sprintf(`
- {name: hgx-%[1]d, count: 50, shape: hgx-h100, spine: s%[2]d, leaf: l%[1]d}
- {name: hgx-busy-%[1]d, count: 10, shape: hgx-h100, spine: s%[2]d, leaf: l%[1]d, allocatedGPUs: [0, 1, 2]}
- {name: nvl72-%[1]d, count: 18, shape: gb200-tray, spine: s%[2]d, leaf: l%[1]d, nvlinkDomain: rack-%[1]d}
- {name: nvl-%[1]d, count: 12, shape: h100-nvl, spine: s%[2]d, leaf: l%[1]d, allocatedGPUs: [0, 1]}
- {name: l40s-%[1]d, count: 10, shape: l40s, spine: s%[2]d, leaf: l%[1]d}`, i, i/8)
	}
	parsed, err := clusterdesc.Parse([]byte("nodes:" + desc))
	if err != nil {
		b.Fatal(err)
	}
	nodes := parsed.Build(time.Now())
	if len(nodes) != 5000 {
		b.Fatalf("built %d nodes, want 5000", len(nodes))
	}
	return nodes
}

// BenchmarkFilterScore runs PreFilter, then Filter and Score on every node,
// for a TP=4 pod that needs GPUDirect RDMA, as one scheduling cycle does;
// the in-tree NodeResourcesFit runs on the same nodes in the same process
// as the baseline. Divide ns/op by 5,000 for the cost per node.
func BenchmarkFilterScore(b *testing.B) {
	nodes := benchCluster(b)
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	var nodeObjs []*v1.Node
	nodeInfos := make([]fwk.NodeInfo, 0, len(nodes))
	for i, n := range nodes {
		n.Topology.ResourceVersion = fmt.Sprint(i + 1)
		if err := indexer.Add(n.Topology); err != nil {
			b.Fatal(err)
		}
		nodeObjs = append(nodeObjs, n.Node)
		ni := framework.NewNodeInfo()
		ni.SetNode(n.Node)
		nodeInfos = append(nodeInfos, ni)
	}
	pod := st.MakePod().Name("tp4").Namespace("default").UID("tp4").
		Req(map[v1.ResourceName]string{clusterdesc.GPUResourceName: "4", v1.ResourceCPU: "8"}).
		Annotation(AnnotationRDMA, "true").Obj()

	v1args := &configv1.NVLinkTopoArgs{}
	configv1.SetDefaults_NVLinkTopoArgs(v1args)
	var args config.NVLinkTopoArgs
	if err := configv1.Convert_v1_NVLinkTopoArgs_To_config_NVLinkTopoArgs(v1args, &args, nil); err != nil {
		b.Fatal(err)
	}
	pl, err := New(args, modelOf(indexer), testingclock.NewFakePassiveClock(time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()

	b.Run("NVLinkTopo", func(b *testing.B) {
		b.ReportAllocs()
		feasible := 0
		for i := 0; i < b.N; i++ {
			state := framework.NewCycleState()
			if _, s := pl.PreFilter(ctx, state, pod, nodeInfos); !s.IsSuccess() {
				b.Fatal(s)
			}
			feasible = 0
			for _, ni := range nodeInfos {
				if s := pl.Filter(ctx, state, pod, ni); !s.IsSuccess() {
					continue
				}
				feasible++
				if _, s := pl.Score(ctx, state, pod, ni); !s.IsSuccess() {
					b.Fatal(s)
				}
			}
		}
		b.ReportMetric(float64(feasible), "feasible-nodes")
	})

	b.Run("NodeResourcesFit", func(b *testing.B) {
		fitArgs := &schedconfig.NodeResourcesFitArgs{ScoringStrategy: &schedconfig.ScoringStrategy{
			Type:      schedconfig.LeastAllocated,
			Resources: []schedconfig.ResourceSpec{{Name: "cpu", Weight: 1}, {Name: "memory", Weight: 1}, {Name: string(clusterdesc.GPUResourceName), Weight: 1}},
		}}
		fit := plugintesting.SetupPlugin(ctx, b, runtime.FactoryAdapter(plfeature.Features{}, noderesources.NewFit), fitArgs,
			schedcache.NewSnapshot(nil, nodeObjs))
		p := fit.(*noderesources.Fit)
		b.ReportAllocs()
		b.ResetTimer()
		feasible := 0
		for i := 0; i < b.N; i++ {
			state := framework.NewCycleState()
			if _, s := p.PreFilter(ctx, state, pod, nodeInfos); !s.IsSuccess() {
				b.Fatal(s)
			}
			if s := p.PreScore(ctx, state, pod, nodeInfos); !s.IsSuccess() {
				b.Fatal(s)
			}
			feasible = 0
			for _, ni := range nodeInfos {
				if s := p.Filter(ctx, state, pod, ni); !s.IsSuccess() {
					continue
				}
				feasible++
				if _, s := p.Score(ctx, state, pod, ni); !s.IsSuccess() {
					b.Fatal(s)
				}
			}
		}
		b.ReportMetric(float64(feasible), "feasible-nodes")
	})
}
