package pdaffinity

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/interpodaffinity"
	plugintesting "k8s.io/kubernetes/pkg/scheduler/framework/plugins/testing"
	"k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	"github.com/tandem-sched/tandem/pkg/topology"
)

const (
	benchNodes = 5000
	benchPods  = 10000
)

// benchCluster is 5,000 HGX nodes (2 zones × 5 spines × 20 leaves × 25
// nodes) holding 10,000 placed engines of 1,000 pooled P/D groups.
func benchCluster() ([]*v1.Node, []*v1.Pod) {
	var nodes []*v1.Node
	for i := 0; i < benchNodes; i++ {
		leaf := i / 25
		spine := leaf / 20
		name := fmt.Sprintf("n%d", i)
		n := node(name, fmt.Sprintf("z%d", spine/5), fmt.Sprintf("s%d", spine), fmt.Sprintf("l%d", leaf), name, 8)
		n.ResourceVersion = fmt.Sprint(i + 1)
		nodes = append(nodes, n)
	}
	var pods []*v1.Pod
	for i := 0; i < benchPods; i++ {
		group := i % 1000
		role := "prefill"
		if i%3 != 0 {
			role = "decode"
		}
		// A group's pods sit in one leaf, as tandem would have put them.
		n := (group*25 + i/1000) % benchNodes
		pod := engine(fmt.Sprintf("e%d", i), role, fmt.Sprintf("g%d", group), 2).Node(fmt.Sprintf("n%d", n)).Obj()
		pods = append(pods, pod)
	}
	return nodes, pods
}

// BenchmarkFilterScore runs one scheduling cycle's PreFilter, Filter,
// PreScore and Score over 5,000 nodes with 10,000 placed pods for a decode
// of a pooled group; the in-tree InterPodAffinity with a required
// podAffinity term on the leaf label — what serving stacks inject today —
// runs on the same snapshot in the same process as the baseline.
func BenchmarkFilterScore(b *testing.B) {
	schedmetrics.Register()
	nodes, placed := benchCluster()
	snapshot := schedcache.NewSnapshot(placed, nodes)
	infos, err := snapshot.NodeInfos().List()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()

	run := func(b *testing.B, pl interface {
		fwk.PreFilterPlugin
		fwk.FilterPlugin
		fwk.PreScorePlugin
		fwk.ScorePlugin
	}, pod *v1.Pod) {
		b.ReportAllocs()
		b.ResetTimer()
		feasible := 0
		for i := 0; i < b.N; i++ {
			state := framework.NewCycleState()
			if _, s := pl.PreFilter(ctx, state, pod, infos); !s.IsSuccess() && !s.IsSkip() {
				b.Fatal(s)
			}
			feasible = 0
			var passed []fwk.NodeInfo
			for _, ni := range infos {
				if pl.Filter(ctx, state, pod, ni).IsSuccess() {
					passed = append(passed, ni)
				}
			}
			feasible = len(passed)
			if s := pl.PreScore(ctx, state, pod, passed); s.IsSkip() {
				continue
			}
			for _, ni := range passed {
				if _, s := pl.Score(ctx, state, pod, ni); !s.IsSuccess() {
					b.Fatal(s)
				}
			}
		}
		b.ReportMetric(float64(feasible), "feasible-nodes")
	}

	b.Run("PDAffinity", func(b *testing.B) {
		pl, err := New(ctx, defaultArgs(), nil)
		if err != nil {
			b.Fatal(err)
		}
		run(b, pl.(*PDAffinity), engine("incoming", "decode", "g7", 2).Obj())
	})
	b.Run("PDAffinity-required-leaf", func(b *testing.B) {
		pl, err := New(ctx, defaultArgs(), nil)
		if err != nil {
			b.Fatal(err)
		}
		run(b, pl.(*PDAffinity), engine("incoming", "decode", "g7", 2).Annotation(AnnotationRequiredLevel, topology.LevelLeaf).Obj())
	})
	b.Run("InterPodAffinity-required-leaf", func(b *testing.B) {
		pl := plugintesting.SetupPluginWithInformers(ctx, b, runtime.FactoryAdapter(plfeature.Features{}, interpodaffinity.New),
			&schedconfig.InterPodAffinityArgs{HardPodAffinityWeight: 1}, snapshot, nil)
		pod := engine("incoming", "decode", "g7", 2).Obj()
		pod.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelGroup: "g7", LabelRole: "prefill"}},
				TopologyKey:   topology.LabelLeaf,
			}},
		}}
		run(b, pl.(*interpodaffinity.InterPodAffinity), pod)
	})
}
