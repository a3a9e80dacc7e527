package gang

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

func requireStatus(t *testing.T, s *fwk.Status, code fwk.Code, msgs ...string) {
	t.Helper()
	require.Equal(t, code, s.Code(), "status %v", s)
	for _, m := range msgs {
		require.Contains(t, s.Message(), m)
	}
}

func TestPreFilter(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	gated := []string{"example.com/wait"}
	tests := []struct {
		name  string
		objs  []runtime.Object
		pod   *v1.Pod
		code  fwk.Code
		msgs  []string
		count int
	}{
		{
			name: "a pod in no group is skipped",
			pod:  st.MakePod().Namespace(ns).Name("solo").Obj(),
			code: fwk.Skip,
		},
		{
			name: "a missing PodGroup is refused, naming the object and the label",
			objs: []runtime.Object{member("p-0", "nogroup").Obj()},
			pod:  member("p-0", "nogroup").Obj(),
			code: fwk.UnschedulableAndUnresolvable,
			msgs: []string{"PodGroup ns/nogroup (scheduling.x-k8s.io/v1alpha1) not found", "scheduling.x-k8s.io/pod-group label"},
		},
		{
			name: "fewer pods than minMember",
			objs: []runtime.Object{podGroup("pg", 3, t0), member("p-0", "pg").Obj(), member("p-1", "pg").Obj()},
			pod:  member("p-0", "pg").Obj(),
			code: fwk.UnschedulableAndUnresolvable,
			msgs: []string{"PodGroup ns/pg has 2 pods, fewer than its minMember 3"},
		},
		{
			name: "a pod of another group or namespace does not count",
			objs: []runtime.Object{podGroup("pg", 2, t0), member("p-0", "pg").Obj(), member("q-0", "other").Obj(),
				st.MakePod().Namespace("elsewhere").Name("p-1").UID("e1").Label(LabelPodGroup, "pg").Obj()},
			pod:  member("p-0", "pg").Obj(),
			code: fwk.UnschedulableAndUnresolvable,
			msgs: []string{"has 1 pods, fewer than its minMember 2"},
		},
		{
			name: "minMember pods",
			objs: []runtime.Object{podGroup("pg", 3, t0), member("p-0", "pg").Obj(), member("p-1", "pg").Obj(), member("p-2", "pg").Obj()},
			pod:  member("p-0", "pg").Obj(),
			code: fwk.Success,
		},
		{
			name: "gated pods within the surplus over minMember are tolerated",
			objs: []runtime.Object{podGroup("pg", 3, t0), member("p-0", "pg").Obj(), member("p-1", "pg").Obj(), member("p-2", "pg").Obj(),
				member("p-3", "pg").SchedulingGates(gated).Obj()},
			pod:  member("p-0", "pg").Obj(),
			code: fwk.Success,
		},
		{
			name: "gated pods beyond the surplus are refused",
			objs: []runtime.Object{podGroup("pg", 3, t0), member("p-0", "pg").Obj(), member("p-1", "pg").Obj(),
				member("p-2", "pg").SchedulingGates(gated).Obj(), member("p-3", "pg").SchedulingGates(gated).Obj()},
			pod:  member("p-0", "pg").Obj(),
			code: fwk.UnschedulableAndUnresolvable,
			msgs: []string{"PodGroup ns/pg has 4 pods, 2 of them scheduling-gated: fewer than its minMember 3 can be scheduled"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, defaultArgs(), tt.objs...)
			if k, ok := keyOf(tt.pod); ok {
				want := 0
				for _, o := range tt.objs {
					if p, ok := o.(*v1.Pod); ok && p.Namespace == k.namespace && p.Labels[LabelPodGroup] == k.name {
						want++
					}
				}
				h.waitMembers(k.name, want)
			}
			_, s := h.gang.PreFilter(h.ctx, framework.NewCycleState(), tt.pod, nil)
			requireStatus(t, s, tt.code, tt.msgs...)
		})
	}
}

// The minResources check runs over the nodes only when the PodGroup sets
// it, counts the group's own pods' requests as free, and a pass is kept for
// the Permit wait.
func TestPreFilterMinResources(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	pg := podGroup("pg", 2, t0)
	pg.Spec.MinResources = v1.ResourceList{"nvidia.com/gpu": resource.MustParse("16")}
	small := podGroup("small", 2, t0)
	small.Spec.MinResources = v1.ResourceList{"nvidia.com/gpu": resource.MustParse("8"), v1.ResourceCPU: resource.MustParse("2")}
	h := newHarness(t, defaultArgs(), pg, small,
		member("p-0", "pg").Obj(), member("p-1", "pg").Obj(), member("s-0", "small").Obj(), member("s-1", "small").Obj())
	h.waitMembers("pg", 2)
	h.waitMembers("small", 2)

	gpuNode := func(name string) *v1.Node {
		return st.MakeNode().Name(name).Capacity(map[v1.ResourceName]string{"nvidia.com/gpu": "8", v1.ResourceCPU: "32", v1.ResourcePods: "110"}).Obj()
	}
	nodes := []*v1.Node{gpuNode("n1"), gpuNode("n2")}
	// Another tenant holds 4 GPUs of n1; p-1 of the group holds 4 of n2.
	tenant := st.MakePod().Namespace("other").Name("tenant").Node("n1").Req(map[v1.ResourceName]string{"nvidia.com/gpu": "4"}).Obj()
	own := member("p-1", "pg").Node("n2").Req(map[v1.ResourceName]string{"nvidia.com/gpu": "4"}).Obj()
	n1, n2 := framework.NewNodeInfo(tenant), framework.NewNodeInfo(own)
	n1.SetNode(nodes[0])
	n2.SetNode(nodes[1])
	infos := []fwk.NodeInfo{n1, n2}

	_, s := h.gang.PreFilter(h.ctx, framework.NewCycleState(), member("p-0", "pg").Obj(), infos)
	requireStatus(t, s, fwk.UnschedulableAndUnresolvable,
		"PodGroup ns/pg needs nvidia.com/gpu 16, pods 2 (minResources and minMember 2)",
		"falls short by nvidia.com/gpu 4")

	// 4 of n1 and all 8 of n2 (the group's own 4 count as free) hold the
	// smaller group, CPU too.
	_, s = h.gang.PreFilter(h.ctx, framework.NewCycleState(), member("s-0", "small").Obj(), infos)
	requireStatus(t, s, fwk.Success)
	// The pass is kept for the Permit wait, whatever the nodes say now...
	_, s = h.gang.PreFilter(h.ctx, framework.NewCycleState(), member("s-1", "small").Obj(), nil)
	requireStatus(t, s, fwk.Success)
	// ...and no longer.
	h.clock.Step(61 * time.Second)
	_, s = h.gang.PreFilter(h.ctx, framework.NewCycleState(), member("s-1", "small").Obj(), nil)
	requireStatus(t, s, fwk.UnschedulableAndUnresolvable, "falls short by cpu 2, nvidia.com/gpu 8, pods 2")

	// A PodGroup without minResources never looks at the nodes.
	free := podGroup("free", 1, t0)
	h.createPodGroup(free)
	h.createPod(member("f-0", "free").Obj())
	h.waitMembers("free", 1)
	_, s = h.gang.PreFilter(h.ctx, framework.NewCycleState(), member("f-0", "free").Obj(), nil)
	requireStatus(t, s, fwk.Success)
}
