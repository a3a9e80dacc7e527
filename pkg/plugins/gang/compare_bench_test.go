package gang

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	tf "k8s.io/kubernetes/pkg/scheduler/testing/framework"
	"k8s.io/utils/clock"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgfake "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned/fake"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"

	"github.com/tandem-sched/tandem/apis/config"
)

// These benchmarks are Gang's half of the comparison with scheduler-plugins'
// Coscheduling (make bench-gang). Coscheduling does not build against
// kube-scheduler 1.37, so its half runs in test/gangbench, a module of its
// own on kube-scheduler 1.34, over the same namespace: the same pods and
// PodGroups, the same sizes, the same sub-benchmark names.

const (
	benchNamespace = "bench"
	benchGroupSize = 8
)

var benchSizes = []int{500, 5000, 50000}

// benchCluster is n pods in one namespace, in PodGroups of benchGroupSize
// (the last one smaller when n is not a multiple) whose minMember is their
// size. test/gangbench builds the same cluster.
func benchCluster(n int) ([]*v1.Pod, []*schedulingv1alpha1.PodGroup) {
	created := metav1.NewTime(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	var pods []*v1.Pod
	var groups []*schedulingv1alpha1.PodGroup
	for i := 0; i < n; i++ {
		pg := fmt.Sprintf("unit-%d", i/benchGroupSize)
		if i%benchGroupSize == 0 {
			groups = append(groups, &schedulingv1alpha1.PodGroup{
				ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: pg, CreationTimestamp: created, ResourceVersion: "1"},
				Spec:       schedulingv1alpha1.PodGroupSpec{MinMember: int32(min(benchGroupSize, n-i))},
			})
		}
		name := fmt.Sprintf("%s-%d", pg, i%benchGroupSize)
		pods = append(pods, st.MakePod().Namespace(benchNamespace).Name(name).UID(name).Label(LabelPodGroup, pg).
			Req(map[v1.ResourceName]string{"nvidia.com/gpu": "4"}).Obj())
	}
	return pods, groups
}

// benchGang is Gang in a framework over informers holding pods and groups.
func benchGang(b *testing.B, pods []*v1.Pod, groups []*schedulingv1alpha1.PodGroup) *Gang {
	b.Helper()
	schedmetrics.Register()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	// The framework logs at start-up (signatures off for the profile) on
	// every sub-benchmark run; a discarding logger keeps the benchmark
	// output readable by benchstat.
	ctx = klog.NewContext(ctx, klog.Logger{})
	objs := make([]runtime.Object, len(groups))
	for i, pg := range groups {
		objs[i] = pg
	}
	// The PodGroups reach the informer through its handlers, as in the
	// scheduler; the pods are put in the pod informer's indexer directly.
	pgFactory := pginformers.NewSharedInformerFactory(pgfake.NewSimpleClientset(objs...), 0)
	pgInformer := pgFactory.Scheduling().V1alpha1().PodGroups()
	pgInformer.Informer()
	pgFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), pgInformer.Informer().HasSynced) {
		b.Fatal("PodGroup informer never synced")
	}

	cs := k8sfake.NewClientset()
	factory := informers.NewSharedInformerFactory(cs, 0)
	args := &config.GangArgs{PermitWaitingTimeSeconds: 60, PodGroupRejectPercentage: 10}
	var g *Gang
	newGang := func(ctx context.Context, _ runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		var err error
		g, err = NewWithPodGroups(ctx, args, h, pgInformer.Informer(), pgInformer.Lister(), clock.RealClock{})
		return g, err
	}
	if _, err := tf.NewFramework(ctx, []tf.RegisterPluginFunc{
		tf.RegisterPluginAsExtensions(Name, newGang, "QueueSort", "PreFilter"),
		tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New),
	}, "tandem-scheduler", frameworkruntime.WithClientSet(cs), frameworkruntime.WithInformerFactory(factory)); err != nil {
		b.Fatal(err)
	}
	for _, p := range pods {
		if err := factory.Core().V1().Pods().Informer().GetIndexer().Add(p); err != nil {
			b.Fatal(err)
		}
	}
	return g
}

// BenchmarkGangPreFilter is one PreFilter of a pod of an 8-pod PodGroup
// with n pods in its namespace: Gang reads the group from an index.
func BenchmarkGangPreFilter(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes {
		pods, groups := benchCluster(n)
		b.Run(fmt.Sprintf("pods=%d/gang", n), func(b *testing.B) {
			g := benchGang(b, pods, groups)
			state := framework.NewCycleState()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, s := g.PreFilter(ctx, state, pods[i%n], nil); !s.IsSuccess() {
					b.Fatal(s)
				}
			}
		})
	}
}

// BenchmarkGangLess is one queue comparison of pods of two PodGroups: Gang
// reads two times from a map.
func BenchmarkGangLess(b *testing.B) {
	pods, groups := benchCluster(5000)
	infos := make([]*framework.QueuedPodInfo, len(pods))
	now := time.Now()
	for i, p := range pods {
		pi, err := framework.NewPodInfo(p)
		if err != nil {
			b.Fatal(err)
		}
		infos[i] = &framework.QueuedPodInfo{PodInfo: pi, QueueingParams: framework.QueueingParams{Timestamp: now, InitialAttemptTimestamp: &now}}
	}
	b.Run("gang", func(b *testing.B) {
		g := benchGang(b, pods, groups)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			g.Less(infos[i%len(infos)], infos[(i*7+benchGroupSize)%len(infos)])
		}
	})
}
