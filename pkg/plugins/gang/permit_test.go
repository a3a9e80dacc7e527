package gang

import (
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/ptr"

	"github.com/tandem-sched/tandem/apis/config"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// unit is a PodGroup of minMember and its pods, none bound.
func unit(name string, minMember int32, pods int) (*v1.Pod, []*v1.Pod, []runtime.Object) {
	objs := []runtime.Object{podGroup(name, minMember, t0)}
	var out []*v1.Pod
	for i := 0; i < pods; i++ {
		p := member(name+"-"+string(rune('a'+i)), name).Obj()
		out = append(out, p)
		objs = append(objs, p)
	}
	return out[0], out, objs
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

func TestPermitWaitsThenAllowsAllAtQuorum(t *testing.T) {
	_, pods, objs := unit("pg", 3, 3)
	h := newHarness(t, defaultArgs(), objs...)
	h.waitMembers("pg", 3)

	// The first pod waits, and has the group's other pods tried next.
	s, activated := h.place(pods[0])
	requireStatus(t, s, fwk.Wait)
	require.Equal(t, []string{"ns/pg-b", "ns/pg-c"}, sorted(activated))
	first := h.waitOnPermit(pods[0])
	first.stillWaiting(t)

	// The second waits too; it is not the first, so it activates nobody.
	s, activated = h.place(pods[1])
	requireStatus(t, s, fwk.Wait)
	require.Empty(t, activated)
	second := h.waitOnPermit(pods[1])
	second.stillWaiting(t)

	// The third completes the quorum: it goes on, and so do the others.
	s, _ = h.place(pods[2])
	requireStatus(t, s, fwk.Success)
	requireStatus(t, first.get(t), fwk.Success)
	requireStatus(t, second.get(t), fwk.Success)
}

func TestPermitWaitTime(t *testing.T) {
	args := defaultArgs()
	args.PermitWaitingTimeSeconds = 42
	pg := podGroup("custom", 2, t0)
	pg.Spec.ScheduleTimeoutSeconds = ptr.To[int32](7)
	h := newHarness(t, args, podGroup("plain", 2, t0), pg)

	s, wait := h.gang.Permit(h.ctx, framework.NewCycleState(), member("a", "plain").Obj(), "node")
	requireStatus(t, s, fwk.Wait, "waiting for PodGroup ns/plain: 0 of minMember 2 pods placed")
	require.Equal(t, 42*time.Second, wait)
	_, wait = h.gang.Permit(h.ctx, framework.NewCycleState(), member("b", "custom").Obj(), "node")
	require.Equal(t, 7*time.Second, wait, "the PodGroup's scheduleTimeoutSeconds")

	// A pod in no group is let through at once.
	s, wait = h.gang.Permit(h.ctx, framework.NewCycleState(), st.MakePod().Namespace(ns).Name("solo").Obj(), "node")
	require.True(t, s.IsSuccess())
	require.Zero(t, wait)
}

func TestPermitRefusesAPodGroupDeletedSincePreFilter(t *testing.T) {
	_, pods, objs := unit("pg", 2, 2)
	h := newHarness(t, defaultArgs(), objs...)
	require.NoError(t, h.pgcs.SchedulingV1alpha1().PodGroups(ns).Delete(h.ctx, "pg", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { _, err := h.gang.podGroup(groupKey{ns, "pg"}); return err != nil }, 5*time.Second, 5*time.Millisecond)
	s, _ := h.place(pods[0])
	requireStatus(t, s, fwk.Unschedulable, "PodGroup ns/pg not found")
}

func TestUnreserveRejectsWaitingSiblings(t *testing.T) {
	_, pods, objs := unit("pg", 3, 3)
	h := newHarness(t, defaultArgs(), objs...)
	h.waitMembers("pg", 3)
	s, _ := h.place(pods[0])
	requireStatus(t, s, fwk.Wait)
	first := h.waitOnPermit(pods[0])
	s, _ = h.place(pods[1])
	requireStatus(t, s, fwk.Wait)
	second := h.waitOnPermit(pods[1])
	h.waitAssigned("pg", 2)

	// The third pod is reserved, then given back (a later plugin failed,
	// or its binding did).
	state, _ := newState()
	require.True(t, h.fw.RunReservePluginsReserve(h.ctx, state, pods[2], "node").IsSuccess())
	h.waitAssigned("pg", 3)
	h.fw.RunReservePluginsUnreserve(h.ctx, state, pods[2], "node")

	for _, r := range []permitResult{first, second} {
		requireStatus(t, r.get(t), fwk.Unschedulable, "PodGroup ns/pg rejected: rejection in Unreserve of its pod pg-c")
	}
	require.Equal(t, 2, h.gang.groups.assignedCount(groupKey{ns, "pg"}), "the unreserved pod still counts")
	failedAt, ok := h.gang.groups.lastFailure(groupKey{ns, "pg"})
	require.True(t, ok)
	require.Equal(t, h.clock.Now(), failedAt, "the failure is not marked")

	// The rejected pods' own Unreserve, as the binding cycle runs it.
	h.fw.RunReservePluginsUnreserve(h.ctx, state, pods[0], "node")
	h.fw.RunReservePluginsUnreserve(h.ctx, state, pods[1], "node")
	require.Zero(t, h.gang.groups.assignedCount(groupKey{ns, "pg"}))
}

func TestPostFilter(t *testing.T) {
	tests := []struct {
		name      string
		minMember int32
		pods      int
		waiting   int
		args      func(*config.GangArgs)
		// rejects: the waiting pods are rejected and the failure marked.
		rejects bool
		backoff bool
	}{
		{name: "far from quorum: the waiting pods are rejected", minMember: 4, pods: 4, waiting: 2, rejects: true},
		{name: "rejected and backed off", minMember: 4, pods: 4, waiting: 2, rejects: true, backoff: true,
			args: func(a *config.GangArgs) { a.PodGroupBackoffSeconds = 30 }},
		{name: "a group missing pods is rejected but not backed off", minMember: 4, pods: 3, waiting: 2, rejects: true,
			args: func(a *config.GangArgs) { a.PodGroupBackoffSeconds = 30 }},
		{name: "within podGroupRejectPercentage of quorum: later pods may complete it", minMember: 4, pods: 4, waiting: 3,
			args: func(a *config.GangArgs) { a.PodGroupRejectPercentage = 25 }},
		{name: "just beyond podGroupRejectPercentage", minMember: 4, pods: 4, waiting: 3, rejects: true,
			args: func(a *config.GangArgs) { a.PodGroupRejectPercentage = 24 }},
		{name: "at quorum, a surplus pod's failure rejects nobody", minMember: 2, pods: 4, waiting: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := defaultArgs()
			if tt.args != nil {
				tt.args(&args)
			}
			_, pods, objs := unit("pg", tt.minMember, tt.pods)
			h := newHarness(t, args, objs...)
			h.waitMembers("pg", tt.pods)
			var results []permitResult
			for _, p := range pods[:tt.waiting] {
				s, _ := h.place(p)
				if s.Code() == fwk.Wait {
					results = append(results, h.waitOnPermit(p))
				}
			}
			k := groupKey{ns, "pg"}
			if tt.waiting >= int(tt.minMember) {
				// The quorum was reached: nobody waits any more.
				for _, r := range results {
					requireStatus(t, r.get(t), fwk.Success)
				}
				results = nil
			}
			failing := pods[tt.pods-1]
			_, s := h.gang.PostFilter(h.ctx, framework.NewCycleState(), failing, nil)
			require.Equal(t, fwk.Unschedulable, s.Code(), "status %v", s)
			_, failed := h.gang.groups.lastFailure(k)
			if !tt.rejects {
				for _, r := range results {
					r.stillWaiting(t)
				}
				require.False(t, failed)
				return
			}
			require.Contains(t, s.Message(), "PodGroup ns/pg rejected: its pod "+failing.Name+" is unschedulable")
			for _, r := range results {
				requireStatus(t, r.get(t), fwk.Unschedulable, "PodGroup ns/pg rejected: its pod "+failing.Name+" is unschedulable")
			}
			require.True(t, failed, "the failure is not marked")

			_, s = h.gang.PreFilter(h.ctx, framework.NewCycleState(), pods[0], nil)
			if !tt.backoff {
				require.NotContains(t, s.Message(), "backed off")
				return
			}
			requireStatus(t, s, fwk.UnschedulableAndUnresolvable, "PodGroup ns/pg failed to schedule and is backed off until 2025-06-01T12:00:30Z")
			// A second failure while backed off does not extend it.
			h.clock.Step(10 * time.Second)
			h.gang.PostFilter(h.ctx, framework.NewCycleState(), failing, nil)
			h.clock.Step(20 * time.Second)
			// Its end retries the group's pending pods.
			require.Eventually(t, func() bool { return len(h.activator.activated()) == tt.pods }, 5*time.Second, 5*time.Millisecond)
			_, s = h.gang.PreFilter(h.ctx, framework.NewCycleState(), pods[0], nil)
			require.True(t, s.IsSuccess(), "status %v", s)
		})
	}
}

func TestPostFilterIgnoresPodsInNoGroup(t *testing.T) {
	h := newHarness(t, defaultArgs())
	_, s := h.gang.PostFilter(h.ctx, framework.NewCycleState(), st.MakePod().Namespace(ns).Name("solo").Obj(), nil)
	require.Equal(t, fwk.Unschedulable, s.Code())
	require.Empty(t, s.Message(), "a pod in no group gets no PodGroup message in its event")
}
