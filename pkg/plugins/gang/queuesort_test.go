package gang

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

func queued(t *testing.T, pod *v1.Pod, initialAttempt time.Time) *framework.QueuedPodInfo {
	t.Helper()
	pi, err := framework.NewPodInfo(pod)
	require.NoError(t, err)
	return &framework.QueuedPodInfo{PodInfo: pi, QueueingParams: framework.QueueingParams{Timestamp: initialAttempt.Add(time.Hour), InitialAttemptTimestamp: &initialAttempt}}
}

func TestLess(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	g := &Gang{groups: newGroups()}
	// Group early was created at 0s, late at 10s; failed was created at
	// 0s and failed at 20s.
	g.groups.setCreated(groupKey{ns, "early"}, at(0))
	g.groups.setCreated(groupKey{ns, "late"}, at(10))
	g.groups.setCreated(groupKey{ns, "failed"}, at(0))
	g.groups.markFailed(groupKey{ns, "failed"}, at(20))

	pod := func(name, pg string, prio int32) *v1.Pod {
		w := st.MakePod().Namespace(ns).Name(name).Priority(prio)
		if pg != "" {
			w = w.Label(LabelPodGroup, pg)
		}
		return w.Obj()
	}
	tests := []struct {
		name string
		a, b *framework.QueuedPodInfo
		want bool
	}{
		{
			name: "higher priority first, whatever the times",
			a:    queued(t, pod("a", "late", 10), at(30)),
			b:    queued(t, pod("b", "early", 1), at(0)),
			want: true,
		},
		{
			name: "lower priority after",
			a:    queued(t, pod("a", "early", 1), at(0)),
			b:    queued(t, pod("b", "late", 10), at(30)),
			want: false,
		},
		{
			name: "same priority: the older PodGroup first, not the pod's own attempt",
			a:    queued(t, pod("a", "early", 0), at(50)),
			b:    queued(t, pod("b", "late", 0), at(1)),
			want: true,
		},
		{
			name: "a failed group sorts by its failure, behind a group created before it",
			a:    queued(t, pod("a", "failed", 0), at(0)),
			b:    queued(t, pod("b", "late", 0), at(0)),
			want: false,
		},
		{
			name: "a pod in no group by its first attempt, against a group's creation",
			a:    queued(t, pod("a", "", 0), at(5)),
			b:    queued(t, pod("b", "late", 0), at(0)),
			want: true,
		},
		{
			name: "pods in no group by their first attempts",
			a:    queued(t, pod("a", "", 0), at(7)),
			b:    queued(t, pod("b", "", 0), at(6)),
			want: false,
		},
		{
			name: "a PodGroup not (yet) known: the pod's first attempt",
			a:    queued(t, pod("a", "unknown", 0), at(3)),
			b:    queued(t, pod("b", "late", 0), at(0)),
			want: true,
		},
		{
			name: "same group: by name, so that the group's pods follow one another",
			a:    queued(t, pod("p-2", "early", 0), at(0)),
			b:    queued(t, pod("p-10", "early", 0), at(9)),
			want: false,
		},
		{
			name: "same group, the other way round",
			a:    queued(t, pod("p-10", "early", 0), at(9)),
			b:    queued(t, pod("p-2", "early", 0), at(0)),
			want: true,
		},
		{
			name: "same time: namespace before name",
			a:    queued(t, st.MakePod().Namespace("a").Name("z").Obj(), at(0)),
			b:    queued(t, st.MakePod().Namespace("b").Name("a").Obj(), at(0)),
			want: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, g.Less(tt.a, tt.b))
		})
	}

	// Clearing the failure (the group reached quorum) restores its
	// creation time.
	g.groups.clearFailed(groupKey{ns, "failed"})
	require.True(t, g.Less(queued(t, pod("a", "failed", 0), at(0)), queued(t, pod("b", "late", 0), at(0))))
}

// Less runs on every queue operation: it must not read objects or copy.
func TestLessAllocatesNothing(t *testing.T) {
	g := &Gang{groups: newGroups()}
	now := time.Now()
	g.groups.setCreated(groupKey{ns, "a"}, now)
	g.groups.markFailed(groupKey{ns, "b"}, now)
	a := queued(t, member("a-0", "a").Obj(), now)
	b := queued(t, member("b-0", "b").Obj(), now)
	c := queued(t, st.MakePod().Namespace(ns).Name("c").Obj(), now)
	allocs := testing.AllocsPerRun(100, func() {
		g.Less(a, b)
		g.Less(b, c)
		g.Less(c, a)
	})
	require.Zero(t, allocs)
}

// The queue's order follows the PodGroups the informer delivers.
func TestLessReadsPodGroupCreationFromTheInformer(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, defaultArgs(), podGroup("old", 1, t0), podGroup("new", 1, t0.Add(time.Minute)))
	a := queued(t, member("a", "new").Obj(), t0)
	b := queued(t, member("b", "old").Obj(), t0.Add(time.Hour))
	require.False(t, h.gang.Less(a, b), "the pod of the newer PodGroup sorted first")
	require.True(t, h.gang.Less(b, a))

	// A PodGroup created later is seen too.
	h.createPodGroup(podGroup("older", 1, t0.Add(-time.Minute)))
	c := queued(t, member("c", "older").Obj(), t0.Add(2*time.Hour))
	require.Eventually(t, func() bool { return h.gang.Less(c, b) }, 5*time.Second, 5*time.Millisecond)
}
