// Package gangbench is scheduler-plugins' Coscheduling's half of the
// comparison with tandem's Gang (make bench-gang runs both). Coscheduling
// does not build against kube-scheduler 1.37, on which tandem is built, so
// this module stays on kube-scheduler 1.34 and does not import tandem; Gang's
// half is pkg/plugins/gang's BenchmarkGangPreFilter and BenchmarkGangLess,
// over the same namespace (the same pods and PodGroups, the same sizes, the
// same sub-benchmark names but for the last element). Keep cluster below
// equal to benchCluster there.
//
//	cd test/gangbench && go test -run '^$' -bench . -benchmem -count 3
package gangbench

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	"sigs.k8s.io/scheduler-plugins/pkg/coscheduling/core"
)

const (
	namespace = "bench"
	groupSize = 8
)

// sizes are the pods in the one namespace, as tandem's benchmark runs its
// engines (~5,000) in one.
var sizes = []int{500, 5000, 50000}

// cluster is n pending pods in one namespace, in PodGroups of groupSize
// (the last one smaller when n is not a multiple) whose minMember is their
// size.
func cluster(n int) ([]*v1.Pod, []*schedulingv1alpha1.PodGroup) {
	created := metav1.NewTime(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	var pods []*v1.Pod
	var groups []*schedulingv1alpha1.PodGroup
	for i := 0; i < n; i++ {
		pg := fmt.Sprintf("unit-%d", i/groupSize)
		if i%groupSize == 0 {
			groups = append(groups, &schedulingv1alpha1.PodGroup{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: pg, CreationTimestamp: created, ResourceVersion: "1"},
				Spec:       schedulingv1alpha1.PodGroupSpec{MinMember: int32(min(groupSize, n-i))},
			})
		}
		name := fmt.Sprintf("%s-%d", pg, i%groupSize)
		pods = append(pods, st.MakePod().Namespace(namespace).Name(name).UID(name).Label(schedulingv1alpha1.PodGroupLabel, pg).
			Req(map[v1.ResourceName]string{"nvidia.com/gpu": "4"}).Obj())
	}
	return pods, groups
}

// cachedReader is the client Coscheduling reads PodGroups with, reduced to
// what its PreFilter and queue sort call: controller-runtime's cache reader
// looks the object up in an informer's indexer and returns a deep copy.
type cachedReader struct {
	client.Client
	indexer cache.Indexer
}

func (c *cachedReader) Get(_ context.Context, key client.ObjectKey, out client.Object, _ ...client.GetOption) error {
	obj, ok, err := c.indexer.GetByKey(key.String())
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s not found", key)
	}
	obj.(*schedulingv1alpha1.PodGroup).DeepCopyInto(out.(*schedulingv1alpha1.PodGroup))
	return nil
}

// coscheduling is scheduler-plugins' PodGroupManager, the core of its
// Coscheduling plugin, over a pod informer holding pods: what
// Coscheduling.PreFilter and Less call.
func coscheduling(b *testing.B, pods []*v1.Pod, groups []*schedulingv1alpha1.PodGroup) *core.PodGroupManager {
	b.Helper()
	factory := informers.NewSharedInformerFactory(k8sfake.NewClientset(), 0)
	podInformer := factory.Core().V1().Pods()
	// The factory's pod informer is indexed by namespace, as Coscheduling
	// asks for.
	for _, p := range pods {
		if err := podInformer.Informer().GetIndexer().Add(p); err != nil {
			b.Fatal(err)
		}
	}
	pgIndexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, pg := range groups {
		if err := pgIndexer.Add(pg); err != nil {
			b.Fatal(err)
		}
	}
	wait := 60 * time.Second
	// The snapshot lister is read only for minResources, which these
	// PodGroups do not set.
	return core.NewPodGroupManager(&cachedReader{indexer: pgIndexer}, nil, &wait, podInformer)
}

// BenchmarkGangPreFilter is one PreFilter of a pod of an 8-pod PodGroup
// with n pods in its namespace: Coscheduling lists the namespace's pods by
// label selector.
func BenchmarkGangPreFilter(b *testing.B) {
	ctx := context.Background()
	for _, n := range sizes {
		pods, groups := cluster(n)
		b.Run(fmt.Sprintf("pods=%d/coscheduling", n), func(b *testing.B) {
			mgr := coscheduling(b, pods, groups)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := mgr.PreFilter(ctx, pods[i%n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGangLess is one queue comparison of pods of two PodGroups:
// Coscheduling's Less reads both PodGroups through its client (a deep copy
// each).
func BenchmarkGangLess(b *testing.B) {
	pods, groups := cluster(5000)
	infos := make([]*framework.QueuedPodInfo, len(pods))
	now := time.Now()
	for i, p := range pods {
		pi, err := framework.NewPodInfo(p)
		if err != nil {
			b.Fatal(err)
		}
		infos[i] = &framework.QueuedPodInfo{PodInfo: pi, Timestamp: now, InitialAttemptTimestamp: &now}
	}
	ctx := context.Background()
	b.Run("coscheduling", func(b *testing.B) {
		mgr := coscheduling(b, pods, groups)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			a, c := infos[i%len(infos)], infos[(i*7+groupSize)%len(infos)]
			// What Coscheduling.Less does besides comparing priorities.
			ta := mgr.GetCreationTimestamp(ctx, a.Pod, *a.InitialAttemptTimestamp)
			tc := mgr.GetCreationTimestamp(ctx, c.Pod, *c.InitialAttemptTimestamp)
			_ = ta.Before(tc) || (ta.Equal(tc) && core.GetNamespacedName(a.Pod) < core.GetNamespacedName(c.Pod))
		}
	})
}
