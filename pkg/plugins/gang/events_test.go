package gang

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// After a restart the scheduler knows nothing but the cluster: the group's
// bound pods arrive as Adds and count toward its quorum.
func TestBoundPodsSeenAtStartCountTowardQuorum(t *testing.T) {
	objs := []runtime.Object{podGroup("pg", 4, t0),
		member("pg-a", "pg").Node("n1").Obj(), member("pg-b", "pg").Node("n2").Obj(), member("pg-c", "pg").Node("n3").Obj(),
		member("pg-d", "pg").Obj()}
	h := newHarness(t, defaultArgs(), objs...)
	h.waitAssigned("pg", 3)
	s, _ := h.place(objs[4].(*v1.Pod))
	requireStatus(t, s, fwk.Success)
}

// A pod seen unbound and then bound (by another scheduler instance, or
// bound before the informer caught up) counts from the Update.
func TestPodBoundInAnUpdateCountsTowardQuorum(t *testing.T) {
	_, pods, objs := unit("pg", 2, 3)
	h := newHarness(t, defaultArgs(), objs...)
	h.waitMembers("pg", 3)
	require.Zero(t, h.gang.groups.assignedCount(groupKey{ns, "pg"}))

	bound := pods[0].DeepCopy()
	bound.Spec.NodeName = "n1"
	_, err := h.cs.CoreV1().Pods(ns).Update(h.ctx, bound, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitAssigned("pg", 1)

	s, _ := h.place(pods[1])
	requireStatus(t, s, fwk.Success)
}

// A pod waiting at Permit goes on when a bound pod seen later completes
// its group's quorum; it does not wait out its timeout.
func TestBoundPodCompletingTheQuorumAllowsTheWaitingPods(t *testing.T) {
	_, pods, objs := unit("pg", 2, 2)
	h := newHarness(t, defaultArgs(), objs...)
	h.waitMembers("pg", 2)
	s, _ := h.place(pods[1])
	requireStatus(t, s, fwk.Wait)
	waiting := h.waitOnPermit(pods[1])
	waiting.stillWaiting(t)

	bound := pods[0].DeepCopy()
	bound.Spec.NodeName = "n1"
	_, err := h.cs.CoreV1().Pods(ns).Update(h.ctx, bound, metav1.UpdateOptions{})
	require.NoError(t, err)
	requireStatus(t, waiting.get(t), fwk.Success)
}

func TestDeletedPodNoLongerCounts(t *testing.T) {
	objs := []runtime.Object{podGroup("pg", 2, t0), member("pg-a", "pg").Node("n1").Obj(), member("pg-b", "pg").Node("n1").Obj()}
	h := newHarness(t, defaultArgs(), objs...)
	h.waitAssigned("pg", 2)
	require.NoError(t, h.cs.CoreV1().Pods(ns).Delete(h.ctx, "pg-a", metav1.DeleteOptions{}))
	h.waitAssigned("pg", 1)
	h.waitMembers("pg", 1)
}

// A pod whose label moves it to another group leaves the first one's count.
func TestRelabelledPodMovesGroups(t *testing.T) {
	objs := []runtime.Object{podGroup("a", 2, t0), podGroup("b", 2, t0), member("p", "a").Node("n1").Obj()}
	h := newHarness(t, defaultArgs(), objs...)
	h.waitAssigned("a", 1)
	p := objs[2].(*v1.Pod).DeepCopy()
	p.Labels[LabelPodGroup] = "b"
	_, err := h.cs.CoreV1().Pods(ns).Update(h.ctx, p, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitAssigned("b", 1)
	h.waitAssigned("a", 0)
}

// A PodGroup created after its pods retries them; so does a change of its
// spec, not of its status.
func TestPodGroupEventsActivateTheGroupsPendingPods(t *testing.T) {
	objs := []runtime.Object{member("pg-a", "pg").Obj(), member("pg-b", "pg").Node("n1").Obj(), member("other", "x").Obj()}
	h := newHarness(t, defaultArgs(), objs...)
	h.waitMembers("pg", 2)
	_, s := h.gang.PreFilter(h.ctx, framework.NewCycleState(), objs[0].(*v1.Pod), nil)
	requireStatus(t, s, fwk.UnschedulableAndUnresolvable, "not found")

	pg := podGroup("pg", 2, t0)
	h.createPodGroup(pg)
	require.Eventually(t, func() bool { return len(h.activator.activated()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"ns/pg-a"}, h.activator.activated(), "only the group's unbound pods")

	// A status update does not; a spec update does.
	pg, err := h.pgcs.SchedulingV1alpha1().PodGroups(ns).Get(h.ctx, "pg", metav1.GetOptions{})
	require.NoError(t, err)
	pg.Status.Phase = "Scheduling"
	pg.ResourceVersion = "2"
	pg, err = h.pgcs.SchedulingV1alpha1().PodGroups(ns).Update(h.ctx, pg, metav1.UpdateOptions{})
	require.NoError(t, err)
	pg.Spec.MinMember = 1
	pg.ResourceVersion = "3"
	_, err = h.pgcs.SchedulingV1alpha1().PodGroups(ns).Update(h.ctx, pg, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.activator.activated()) == 2 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	require.Len(t, h.activator.activated(), 2, "a status update activated the group")
}

func TestQueueingHints(t *testing.T) {
	limited := podGroup("limited", 2, t0)
	limited.Spec.MinResources = v1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}
	h := newHarness(t, defaultArgs(), podGroup("pg", 2, t0), limited)
	logger := klog.Background()
	rejected := member("pg-a", "pg").Obj()
	events, err := h.gang.EventsToRegister(h.ctx)
	require.NoError(t, err)
	hint := map[fwk.ClusterEvent]fwk.QueueingHintFn{}
	for _, e := range events {
		hint[e.Event] = e.QueueingHintFn
	}
	podAdd := hint[fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add}]
	podDelete := hint[fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}]
	nodeAdd := hint[fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add}]
	require.NotNil(t, podAdd)
	require.NotNil(t, podDelete)
	require.NotNil(t, nodeAdd)

	for _, tt := range []struct {
		name  string
		fn    fwk.QueueingHintFn
		pod   *v1.Pod
		old   interface{}
		added interface{}
		want  fwk.QueueingHint
	}{
		{"a pod of the group added", podAdd, rejected, nil, member("pg-b", "pg").Obj(), fwk.Queue},
		{"a pod of the group bound", podAdd, rejected, nil, member("pg-b", "pg").Node("n1").Obj(), fwk.Queue},
		{"a pod of another group", podAdd, rejected, nil, member("x-b", "x").Obj(), fwk.QueueSkip},
		{"a pod of a same-named group elsewhere", podAdd, rejected, nil, st.MakePod().Namespace("other").Name("pg-b").Label(LabelPodGroup, "pg").Obj(), fwk.QueueSkip},
		{"a pod in no group", podAdd, rejected, nil, st.MakePod().Namespace(ns).Name("solo").Obj(), fwk.QueueSkip},
		{"a node added, the group has no minResources", nodeAdd, rejected, nil, st.MakeNode().Name("n").Obj(), fwk.QueueSkip},
		{"a node added, the group has minResources", nodeAdd, member("l-a", "limited").Obj(), nil, st.MakeNode().Name("n").Obj(), fwk.Queue},
		{"an assigned pod deleted, the group has minResources", podDelete, member("l-a", "limited").Obj(), st.MakePod().Name("x").Node("n").Obj(), nil, fwk.Queue},
		{"an unassigned pod deleted frees nothing", podDelete, member("l-a", "limited").Obj(), st.MakePod().Name("x").Obj(), nil, fwk.QueueSkip},
		{"an assigned pod deleted, the group has no minResources", podDelete, rejected, st.MakePod().Name("x").Node("n").Obj(), nil, fwk.QueueSkip},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.fn(logger, tt.pod, tt.old, tt.added)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
