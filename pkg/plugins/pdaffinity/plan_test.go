package pdaffinity

import (
	"context"
	"fmt"
	fwk "k8s.io/kube-scheduler/framework"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	schedcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	plugintesting "k8s.io/kubernetes/pkg/scheduler/framework/plugins/testing"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// plannedCluster is two leaves of HGX boards; every board of leaf l1 and
// one of l2 have GPUs held by another tenant.
const plannedCluster = `nodes:
- {name: l1, count: 3, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3, 4]}
- {name: l2-used, shape: hgx-h100, zone: z1, spine: s1, leaf: l2, allocatedGPUs: [0, 1]}
- {name: l2-free, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l2}
`

// newPlanningPlugin is the plugin as the scheduler builds it: with the
// shared placement model fed from the cluster's nodes and reports, and the
// unit's pods in the pod informer.
func newPlanningPlugin(t *testing.T, pods ...*v1.Pod) (*PDAffinity, *topology.Cluster, []*v1.Node) {
	t.Helper()
	return newPlanningPluginOn(t, plannedCluster, pods...)
}

func newPlanningPluginOn(t *testing.T, clusterYAML string, pods ...*v1.Pod) (*PDAffinity, *topology.Cluster, []*v1.Node) {
	t.Helper()
	desc, err := clusterdesc.Parse([]byte(clusterYAML))
	require.NoError(t, err)
	cluster := topology.NewCluster()
	var nodes []*v1.Node
	for _, n := range desc.Build(time.Now()) {
		nodes = append(nodes, n.Node)
		cluster.SetNodeLabels(n.Node.Name, n.Node.Labels)
		cluster.SetReport(n.Node.Name, topologysource.ReportOf(n.Topology))
	}
	objs := make([]runtime.Object, 0, len(pods))
	for _, p := range pods {
		objs = append(objs, p)
	}
	pl := plugintesting.SetupPluginWithInformers(context.Background(), t, New, defaultArgs(), schedcache.NewSnapshot(nil, nodes), objs).(*PDAffinity)
	pl.src = topologysource.New(time.Second)
	pl.domains = cluster.Domains(pl.levels)
	return pl, cluster, nodes
}

func TestPlannedUnitNarrowsToItsPlan(t *testing.T) {
	// A unit whose prefills use TP2 and whose decode uses TP4: all three
	// fit one free board, and nowhere in l1.
	p0 := engine("u-p0", "prefill", "u", 2, LabelUnitSize, "3").Obj()
	p1 := engine("u-p1", "prefill", "u", 2, LabelUnitSize, "3").Obj()
	d0 := engine("u-d0", "decode", "u", 4, LabelUnitSize, "3").Obj()
	pl, _, nodes := newPlanningPlugin(t, p0, p1, d0)

	state := framework.NewCycleState()
	result, status := pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess(), status.Message())
	require.NotNil(t, result)
	s, err := readState(state)
	require.NoError(t, err)
	require.NotNil(t, s.planned)
	planned := s.planned.node
	require.Regexp(t, "^l2-free-", planned)
	require.True(t, result.NodeNames.Has(planned))
	require.LessOrEqual(t, result.NodeNames.Len(), planFallbacks+1)

	// The planned node scores full marks, a fallback less.
	infos := nodeInfos(t, nodes)
	require.Equal(t, int64(fwk.MaxNodeScore), mustScore(t, pl, state, p0, infos[planned]))
	for n := range result.NodeNames {
		if n != planned {
			require.Less(t, mustScore(t, pl, state, p0, infos[n]), int64(fwk.MaxNodeScore))
		}
	}

	// The unit's other pods follow the same plan to the same board.
	require.Nil(t, pl.Reserve(context.Background(), state, p0, planned))
	for _, pod := range []*v1.Pod{p1, d0} {
		st := framework.NewCycleState()
		_, status := pl.PreFilter(context.Background(), st, pod, nil)
		require.True(t, status.IsSuccess())
		s, err := readState(st)
		require.NoError(t, err)
		require.Equal(t, planned, s.planned.node, "pod %s", pod.Name)
	}
}

func TestPlanIsRedoneWhenItsNodeIsTaken(t *testing.T) {
	p0 := engine("u-p0", "prefill", "u", 4, LabelUnitSize, "2").Obj()
	d0 := engine("u-d0", "decode", "u", 4, LabelUnitSize, "2").Obj()
	pl, cluster, _ := newPlanningPlugin(t, p0, d0)

	state := framework.NewCycleState()
	_, status := pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess())
	s, _ := readState(state)
	first := s.planned.node

	// Another scheduler's pods take the planned board before p0 binds; p0's
	// attempt fails and it comes back.
	_, unfit, reason := cluster.Reserve("intruder", "other/intruder", first, req8(), topology.Usable)
	require.Empty(t, reason)
	require.Nil(t, unfit)

	state = framework.NewCycleState()
	result, status := pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess())
	s, _ = readState(state)
	require.NotNil(t, s.planned)
	require.NotEqual(t, first, s.planned.node, "the second attempt replans")
	require.True(t, result.NodeNames.Has(s.planned.node))

	// A third failure gives up narrowing: the pod is evaluated everywhere.
	state = framework.NewCycleState()
	result, status = pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess())
	require.Nil(t, result)
	s, _ = readState(state)
	require.Nil(t, s.planned)
	require.NotNil(t, s.index)
}

func TestPlannedRestartAnchorsOnBoundPods(t *testing.T) {
	// After a restart the plan is rebuilt around what is bound.
	p0 := engine("u-p0", "prefill", "u", 4, LabelUnitSize, "2").Node("l2-used").Obj()
	d0 := engine("u-d0", "decode", "u", 4, LabelUnitSize, "2").Obj()
	pl, _, _ := newPlanningPlugin(t, p0, d0)
	state := framework.NewCycleState()
	_, status := pl.PreFilter(context.Background(), state, d0, nil)
	require.True(t, status.IsSuccess())
	s, _ := readState(state)
	require.NotNil(t, s.planned)
	// l2-used has 6 free GPUs: the decode joins its prefill there.
	require.Equal(t, "l2-used", s.planned.node)
	require.Equal(t, []string{"l2-used"}, s.planned.peers[roleSlot(RolePrefill)])
}

func req8() topology.GPURequest {
	return topology.GPURequest{Count: 8, Island: topology.IslandRequired, MaxNICLevel: topology.PCIeLevelPXB}
}

func nodeInfos(t *testing.T, nodes []*v1.Node) map[string]*framework.NodeInfo {
	t.Helper()
	out := map[string]*framework.NodeInfo{}
	for _, n := range nodes {
		ni := framework.NewNodeInfo()
		ni.SetNode(n)
		out[n.Name] = ni
	}
	return out
}

func mustScore(t *testing.T, pl *PDAffinity, state *framework.CycleState, pod *v1.Pod, ni *framework.NodeInfo) int64 {
	t.Helper()
	s, status := pl.Score(context.Background(), state, pod, ni)
	require.True(t, status.IsSuccess(), status.Message())
	return s
}

func TestPoolPodIsNarrowedToTheOtherRolesDomains(t *testing.T) {
	// A decode of the pool runs on l2-used, which has 6 GPUs free: a TP4
	// prefill is offered that board first, and nothing in leaf l1.
	d0 := engine("pool-d0", "decode", "pool", 4).Node("l2-used").Obj()
	p0 := engine("pool-p0", "prefill", "pool", 4).Obj()
	pl, _, _ := newPlanningPlugin(t, d0, p0)
	state := framework.NewCycleState()
	result, status := pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess(), status.Message())
	require.NotNil(t, result)
	require.Equal(t, []string{"l2-used"}, sets.List(result.NodeNames))

	// With that board full, the search widens to the leaf, never to l1
	// while l2 has room.
	pl2, cluster, _ := newPlanningPlugin(t, d0, p0)
	_, unfit, reason := cluster.Reserve("x", "other/x", "l2-used", topology.GPURequest{Count: 6, Island: topology.IslandRequired}, topology.Usable)
	require.Empty(t, reason)
	require.Nil(t, unfit)
	result, status = pl2.PreFilter(context.Background(), framework.NewCycleState(), p0, nil)
	require.True(t, status.IsSuccess())
	require.NotNil(t, result)
	for n := range result.NodeNames {
		require.Regexp(t, "^l2-free-", n)
	}
}

func TestFirstPoolPodLeavesRoomForAPartner(t *testing.T) {
	// No decode placed yet: the first prefill goes where a decode can join
	// it on one board, not onto l1's boards with 3 GPUs free.
	p0 := engine("pool-p0", "prefill", "pool", 2).Obj()
	pl, _, nodes := newPlanningPlugin(t, p0)
	state := framework.NewCycleState()
	result, status := pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess())
	require.NotNil(t, result)
	s, err := readState(state)
	require.NoError(t, err)
	require.NotNil(t, s.planned)
	require.Equal(t, "l2-used", s.planned.node, "the tightest board with room for the pair")
	require.True(t, result.NodeNames.Has("l2-used"))
	infos := nodeInfos(t, nodes)
	require.Equal(t, int64(fwk.MaxNodeScore), mustScore(t, pl, state, p0, infos["l2-used"]))
	for n := range result.NodeNames {
		if n != "l2-used" {
			require.Less(t, mustScore(t, pl, state, p0, infos[n]), int64(fwk.MaxNodeScore))
		}
	}
}

// Pods that carry only another stack's labels (an LWS DisaggregatedSet
// slice, no tandem.dev labels, no PodGroup) are planned as one unit too.
func TestPlanWithLWSLabels(t *testing.T) {
	lws := func(name, role string, gpus int) *v1.Pod {
		return st.MakePod().Name(name).Namespace("default").UID(name).Labels(map[string]string{
			"disaggregatedset.x-k8s.io/role": role, "disaggregatedset.x-k8s.io/name": "llama",
			"disaggregatedset.x-k8s.io/slice": "0",
		}).Req(map[v1.ResourceName]string{"nvidia.com/gpu": fmt.Sprint(gpus)}).Obj()
	}
	p0, d0 := lws("llama-0-prefill-0", "prefill", 2), lws("llama-0-decode-0", "decode", 4)
	pl, _, _ := newPlanningPlugin(t, p0, d0)
	state := framework.NewCycleState()
	result, status := pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess(), status.Message())
	require.NotNil(t, result)
	s, err := readState(state)
	require.NoError(t, err)
	require.NotNil(t, s.planned)
	require.Regexp(t, "^l2-", s.planned.node, "6 free GPUs on one board: only leaf l2 has them")
	require.Nil(t, pl.Reserve(context.Background(), state, p0, s.planned.node))
	state = framework.NewCycleState()
	_, status = pl.PreFilter(context.Background(), state, d0, nil)
	require.True(t, status.IsSuccess())
	s2, _ := readState(state)
	require.Equal(t, s.planned.node, s2.planned.node)
}

// A pool that arrives whole, decodes first in the queue (they sort before
// prefills by name), is planned in chunks: every decode lands on a board
// with a prefill of the pool, though no prefill is placed when the first
// decode is scheduled. Placed one by one, each decode took the tightest hole
// with room for one partner (a board with 4 GPUs free each), and the two
// prefills could join only two of the four.
func TestPoolArrivingWholeIsPlannedInChunks(t *testing.T) {
	var pods []*v1.Pod
	for i := range 4 {
		pods = append(pods, engine(fmt.Sprintf("pool-decode-%d", i), "decode", "pool", 2).Obj())
	}
	for i := range 2 {
		pods = append(pods, engine(fmt.Sprintf("pool-prefill-%d", i), "prefill", "pool", 2).Obj())
	}
	pl, cluster, _ := newPlanningPluginOn(t, `nodes:
- {name: half, count: 3, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3]}
- {name: whole, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: far, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l2, allocatedGPUs: [0, 1, 2, 3, 4, 5]}
`, pods...)
	nodeOf := map[string]string{}
	for _, pod := range pods {
		state := framework.NewCycleState()
		result, status := pl.PreFilter(context.Background(), state, pod, nil)
		require.True(t, status.IsSuccess(), status.Message())
		require.NotNil(t, result, "pod %s", pod.Name)
		s, err := readState(state)
		require.NoError(t, err)
		require.NotNil(t, s.planned, "pod %s is placed by its chunk's plan", pod.Name)
		require.True(t, topologysource.Planned(state), "NVLinkTopo is told the pod is planned")
		node := s.planned.node
		// NVLinkTopo's Reserve takes the GPUs in the model.
		_, unfit, reason := cluster.Reserve(string(pod.UID), podKey(pod), node, topology.GPURequest{Count: 2, Island: topology.IslandRequired}, topology.Usable)
		require.Empty(t, reason)
		require.Nil(t, unfit, "pod %s on %s", pod.Name, node)
		require.Nil(t, pl.Reserve(context.Background(), state, pod, node))
		nodeOf[pod.Name] = node
	}
	prefillNodes := sets.New(nodeOf["pool-prefill-0"], nodeOf["pool-prefill-1"])
	for i := range 4 {
		d := fmt.Sprintf("pool-decode-%d", i)
		require.True(t, prefillNodes.Has(nodeOf[d]), "%s on %s shares no board with a prefill (%v)", d, nodeOf[d], nodeOf)
	}
}

// A chunk pod whose planned placement fails leaves its chunk: the chunk no
// longer waits for it, and its next attempt is narrowed around the pool's
// placed pods instead; while the pool's planned pods of the other role are
// still to be placed, it waits for them rather than take their room.
func TestPoolChunkPodLeavesItsChunkAfterAFailedAttempt(t *testing.T) {
	d0 := engine("pool-decode-0", "decode", "pool", 2).Obj()
	p0 := engine("pool-prefill-0", "prefill", "pool", 2).Obj()
	pl, _, _ := newPlanningPlugin(t, d0, p0)
	state := framework.NewCycleState()
	_, status := pl.PreFilter(context.Background(), state, d0, nil)
	require.True(t, status.IsSuccess())
	s, _ := readState(state)
	require.NotNil(t, s.planned)
	key := s.planKey
	require.NotEmpty(t, key)

	state = framework.NewCycleState()
	_, status = pl.PreFilter(context.Background(), state, d0, nil)
	require.Equal(t, fwk.Unschedulable, status.Code(), status.Message())
	require.Contains(t, status.Message(), "waiting for 1 planned prefill pods of the pool")
	s, _ = readState(state)
	require.False(t, topologysource.Planned(state), "the second attempt is not placed by the chunk")
	require.Equal(t, key, s.planKey)
	pl.plans.mu.Lock()
	_, waits := pl.plans.byUnit[key].plan.Nodes[podKey(d0)]
	pl.plans.mu.Unlock()
	require.False(t, waits)

	// The prefill still follows the chunk's plan, and binding it forgets
	// the chunk.
	state = framework.NewCycleState()
	_, status = pl.PreFilter(context.Background(), state, p0, nil)
	require.True(t, status.IsSuccess())
	s, _ = readState(state)
	require.NotNil(t, s.planned)
	require.Equal(t, key, s.planKey)
	pl.boundIn(p0, key)
	pl.plans.mu.Lock()
	defer pl.plans.mu.Unlock()
	require.NotContains(t, pl.plans.byUnit, key)
	require.Empty(t, pl.plans.chunkOf)
}

// A pool arriving whole on a cluster that cannot hold it all is planned in a
// smaller chunk, both roles in proportion: its decodes do not take the room
// its prefills need. Queue order puts every decode first.
func TestPoolChunkShrinksToWhatTheClusterHolds(t *testing.T) {
	var pods []*v1.Pod
	for i := range 8 {
		pods = append(pods, engine(fmt.Sprintf("pool-decode-%d", i), "decode", "pool", 2).Obj())
	}
	for i := range 4 {
		pods = append(pods, engine(fmt.Sprintf("pool-prefill-%d", i), "prefill", "pool", 2).Obj())
	}
	// 18 free GPUs for a pool asking 24.
	pl, cluster, nodes := newPlanningPluginOn(t, `nodes:
- {name: gpu, count: 3, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1]}
`, pods...)
	req := topology.GPURequest{Count: 2, Island: topology.IslandRequired}
	nodeOf := map[string]string{}
	for _, pod := range pods {
		state := framework.NewCycleState()
		result, status := pl.PreFilter(context.Background(), state, pod, nil)
		if status.Code() == fwk.Unschedulable {
			// Waits for the pool's planned prefills.
			require.Contains(t, status.Message(), "planned prefill pods of the pool", pod.Name)
			continue
		}
		require.True(t, status.IsSuccess(), status.Message())
		s, err := readState(state)
		require.NoError(t, err)
		var candidates []string
		if s.planned != nil {
			candidates = []string{s.planned.node}
		} else if result != nil {
			candidates = sets.List(result.NodeNames)
		} else {
			for _, n := range nodes {
				candidates = append(candidates, n.Name)
			}
		}
		for _, node := range candidates {
			if _, unfit, reason := cluster.Reserve(string(pod.UID), podKey(pod), node, req, topology.Usable); unfit == nil && reason == "" {
				require.Nil(t, pl.Reserve(context.Background(), state, pod, node))
				nodeOf[pod.Name] = node
				break
			}
		}
	}
	prefillNodes := sets.New[string]()
	for i := range 4 {
		if n := nodeOf[fmt.Sprintf("pool-prefill-%d", i)]; n != "" {
			prefillNodes.Insert(n)
		}
	}
	require.Equal(t, 3, prefillNodes.Len(), "a prefill on each node (%v)", nodeOf)
	decodes := 0
	for i := range 8 {
		d := fmt.Sprintf("pool-decode-%d", i)
		if n := nodeOf[d]; n != "" {
			decodes++
			require.True(t, prefillNodes.Has(n), "%s on %s shares no board with a prefill (%v)", d, n, nodeOf)
		}
	}
	require.Equal(t, 6, decodes, "two decodes beside each prefill (%v)", nodeOf)
}
