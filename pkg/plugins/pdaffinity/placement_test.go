package pdaffinity

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"
	schedcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	plugintesting "k8s.io/kubernetes/pkg/scheduler/framework/plugins/testing"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// node builds a GPU node under the given zone/spine/leaf/NVLink domain.
func node(name, zone, spine, leaf, nvlink string, gpus int) *v1.Node {
	labels := map[string]string{v1.LabelHostname: name, topology.LabelGPUDirectRDMA: "true"}
	for k, v := range map[string]string{topology.LabelZone: zone, topology.LabelSpine: spine, topology.LabelLeaf: leaf, topology.LabelNVLinkDomain: nvlink} {
		if v != "" {
			labels[k] = v
		}
	}
	return withNodeLabels(st.MakeNode().Name(name), labels).Capacity(map[v1.ResourceName]string{
		"nvidia.com/gpu": fmt.Sprint(gpus), v1.ResourceCPU: "128", v1.ResourceMemory: "1Ti", v1.ResourcePods: "110",
	}).Obj()
}

// The test fabric: two zones; in z1 two spines; spine s1 has leaves l1
// (HGX nodes a1, a2: an NVLink domain each) and l2 (b1); spine s2 has leaf
// l1 too (the same leaf name under another spine) with an NVL72 rack of two
// trays; z2 has one node.
func fabricNodes() []*v1.Node {
	return []*v1.Node{
		node("a1", "z1", "s1", "l1", "a1", 8),
		node("a2", "z1", "s1", "l1", "a2", 8),
		node("b1", "z1", "s1", "l2", "b1", 8),
		node("r1t1", "z1", "s2", "l1", "rack1", 4),
		node("r1t2", "z1", "s2", "l1", "rack1", 4),
		node("far", "z2", "s9", "l9", "far", 8),
	}
}

func engine(name, role, group string, gpus int, labels ...string) *st.PodWrapper {
	l := map[string]string{LabelRole: role, LabelGroup: group}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return st.MakePod().Name(name).Namespace("default").UID(name).Labels(l).
		Req(map[v1.ResourceName]string{"nvidia.com/gpu": fmt.Sprint(gpus)})
}

type cycle struct {
	pl    *PDAffinity
	state *framework.CycleState
	infos map[string]fwk.NodeInfo
}

// runCycle runs PreFilter for pod against nodes holding placed.
func runCycle(t *testing.T, pl *PDAffinity, pod *v1.Pod, nodes []*v1.Node, placed ...*v1.Pod) (*cycle, *fwk.Status) {
	t.Helper()
	snapshot := schedcache.NewSnapshot(placed, nodes)
	list, err := snapshot.NodeInfos().List()
	require.NoError(t, err)
	infos := map[string]fwk.NodeInfo{}
	for _, ni := range list {
		infos[ni.Node().Name] = ni
	}
	state := framework.NewCycleState()
	_, status := pl.PreFilter(context.Background(), state, pod, list)
	return &cycle{pl: pl, state: state, infos: infos}, status
}

func (c *cycle) filter(t *testing.T, pod *v1.Pod, node string) *fwk.Status {
	return c.pl.Filter(context.Background(), c.state, pod, c.infos[node])
}

func (c *cycle) score(t *testing.T, pod *v1.Pod, node string) int64 {
	t.Helper()
	require.True(t, c.pl.PreScore(context.Background(), c.state, pod, nil).IsSuccess())
	s, status := c.pl.Score(context.Background(), c.state, pod, c.infos[node])
	require.True(t, status.IsSuccess(), status.Message())
	require.True(t, s >= 0 && s <= fwk.MaxNodeScore, "score %d", s)
	return s
}

func TestReplicaModeScoresByLowestCommonLevel(t *testing.T) {
	pl := newTestPlugin(t, nil)
	prefill := engine("u-p0", "prefill", "u", 4, LabelUnitSize, "2").Node("a1").Obj()
	decode := engine("u-d0", "decode", "u", 4, LabelUnitSize, "2").Obj()
	c, status := runCycle(t, pl, decode, fabricNodes(), prefill)
	require.True(t, status.IsSuccess(), status.Message())

	scores := map[string]int64{}
	for _, n := range []string{"a1", "a2", "b1", "r1t1", "far"} {
		require.True(t, c.filter(t, decode, n).IsSuccess())
		scores[n] = c.score(t, decode, n)
	}
	// Same node (and NVLink domain) > same leaf > same spine > the same
	// leaf *name* under another spine, which is only the same zone > another zone.
	require.Equal(t, int64(fwk.MaxNodeScore), scores["a1"])
	require.Greater(t, scores["a1"], scores["a2"])
	require.Greater(t, scores["a2"], scores["b1"])
	require.Greater(t, scores["b1"], scores["r1t1"])
	require.Greater(t, scores["r1t1"], scores["far"])
	require.Zero(t, scores["far"])
}

func TestFirstPodOfAUnitLooksAhead(t *testing.T) {
	pl := newTestPlugin(t, nil)
	// A 1P1D unit of TP=4 engines needs 8 GPUs. The rack has 8 on one NVLink
	// domain; a1 has 8 on its own; b1 has only 4 left.
	busy := st.MakePod().Name("busy").Namespace("other").UID("busy").Node("b1").
		Req(map[v1.ResourceName]string{"nvidia.com/gpu": "4"}).Obj()
	first := engine("u-p0", "prefill", "u", 4, LabelUnitSize, "2").Obj()
	c, status := runCycle(t, pl, first, fabricNodes(), busy)
	require.True(t, status.IsSuccess(), status.Message())
	// A node whose own NVLink domain holds the whole unit beats one where
	// only the leaf does.
	require.Greater(t, c.score(t, first, "a1"), c.score(t, first, "b1"))
	require.Greater(t, c.score(t, first, "r1t1"), c.score(t, first, "b1"))
}

func TestRequiredLevel(t *testing.T) {
	pl := newTestPlugin(t, nil)
	prefill := engine("u-p0", "prefill", "u", 4, LabelUnitSize, "2").Node("a1").Obj()
	decode := engine("u-d0", "decode", "u", 4, LabelUnitSize, "2").Annotation(AnnotationRequiredLevel, "leaf").Obj()
	c, status := runCycle(t, pl, decode, fabricNodes(), prefill)
	require.True(t, status.IsSuccess())
	require.True(t, c.filter(t, decode, "a2").IsSuccess())
	s := c.filter(t, decode, "r1t1")
	require.Equal(t, fwk.UnschedulableAndUnresolvable, s.Code())
	require.Equal(t, "node is outside the leaf of group u's placed pods (tandem.dev/required-level=leaf)", s.Message())

	// The first pod of a unit too big for any leaf is rejected everywhere,
	// with the numbers.
	big := engine("v-p0", "prefill", "v", 8, LabelUnitSize, "4").Annotation(AnnotationRequiredLevel, "leaf").Obj()
	c, status = runCycle(t, pl, big, fabricNodes())
	require.True(t, status.IsSuccess())
	s = c.filter(t, big, "a1")
	require.Equal(t, fwk.Unschedulable, s.Code())
	require.Equal(t, "leaf has too few free GPUs: unit v needs 32 in one leaf (tandem.dev/required-level=leaf)", s.Message())

	bad := engine("w", "decode", "w", 1).Annotation(AnnotationRequiredLevel, "rack").Obj()
	_, status = runCycle(t, pl, bad, fabricNodes())
	require.Equal(t, fwk.UnschedulableAndUnresolvable, status.Code())
	require.Contains(t, status.Message(), `pod annotation tandem.dev/required-level="rack" is not a topology level`)
}

func TestSameNodePolicy(t *testing.T) {
	prefill := engine("p", "prefill", "g", 4).Node("a1").Obj()
	decode := engine("d", "decode", "g", 4).Obj()
	for _, tc := range []struct {
		policy       config.SameNodePolicy
		wantFiltered bool
		wantTop      bool
	}{
		{config.SameNodePrefer, false, true},
		{config.SameNodeAllow, false, true},
		{config.SameNodeForbid, true, false},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			pl := newTestPlugin(t, func(a *config.PDAffinityArgs) { a.SameNode = tc.policy })
			c, status := runCycle(t, pl, decode, fabricNodes(), prefill)
			require.True(t, status.IsSuccess())
			s := c.filter(t, decode, "a1")
			require.Equal(t, tc.wantFiltered, !s.IsSuccess(), s.Message())
			if !tc.wantFiltered {
				// a1 is the prefill's node and NVLink domain: nothing is closer.
				require.GreaterOrEqual(t, c.score(t, decode, "a1"), c.score(t, decode, "a2"))
			}
		})
	}
}

func TestPoolModeBalancesTheLeafRatio(t *testing.T) {
	pl := newTestPlugin(t, nil)
	// Leaf s1/l1 holds one prefill and three decodes; leaf s1/l2 a pair.
	placed := []*v1.Pod{
		engine("p0", "prefill", "chat", 2).Node("a2").Obj(),
		engine("d0", "decode", "chat", 2).Node("a1").Obj(),
		engine("d1", "decode", "chat", 2).Node("a1").Obj(),
		engine("d3", "decode", "chat", 2).Node("a2").Obj(),
		engine("p1", "prefill", "chat", 2).Node("b1").Obj(),
		engine("d2", "decode", "chat", 2).Node("b1").Obj(),
	}
	prefill := engine("p2", "prefill", "chat", 4).Obj()
	c, status := runCycle(t, pl, prefill, fabricNodes(), placed...)
	require.True(t, status.IsSuccess())
	// Both nodes hold a decode; the leaf short of prefill wins.
	require.Greater(t, c.score(t, prefill, "a1"), c.score(t, prefill, "b1"))

	bad := engine("p9", "prefill", "chat", 4).Annotation(AnnotationPDRatio, "1:0").Obj()
	_, status = runCycle(t, pl, bad, fabricNodes(), placed...)
	require.Equal(t, fwk.UnschedulableAndUnresolvable, status.Code())
	require.Contains(t, status.Message(), `pod annotation tandem.dev/pd-ratio="1:0" is not a ratio`)
}

func TestLevelPresets(t *testing.T) {
	for _, tc := range []struct {
		preset    string
		labels    func(spine, leaf string) map[string]string
		sameLeaf  bool
		wantClass topology.PathClass
	}{
		{preset: "gke", labels: func(s, l string) map[string]string {
			return map[string]string{"cloud.google.com/gce-topology-block": s, "cloud.google.com/gce-topology-subblock": l}
		}},
		{preset: "eks", labels: func(s, l string) map[string]string {
			return map[string]string{"topology.k8s.aws/network-node-layer-1": "top", "topology.k8s.aws/network-node-layer-2": s, "topology.k8s.aws/network-node-layer-3": l}
		}},
		{preset: "topograph", labels: func(s, l string) map[string]string {
			return map[string]string{"fabric.topograph.run/tier-2": "core", "fabric.topograph.run/tier-1": s, "fabric.topograph.run/tier-0": l}
		}},
		{preset: "oci", labels: func(s, l string) map[string]string {
			return map[string]string{"oci.oraclecloud.com/rdma.hpc_island_id": "island", "oci.oraclecloud.com/rdma.network_block_id": s, "oci.oraclecloud.com/rdma.local_block_id": l}
		}},
		{preset: "nebius", labels: func(s, l string) map[string]string {
			return map[string]string{"topology.nebius.com/gpu-cluster-id": "c1", "topology.nebius.com/tier-2": s, "topology.nebius.com/tier-1": l}
		}},
		{preset: "coreweave", labels: func(s, l string) map[string]string {
			return map[string]string{"backend.coreweave.cloud/fabric": "f1", "ib.coreweave.cloud/superpod": s, "backend.coreweave.cloud/leafgroup": l}
		}},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			pl := newTestPlugin(t, func(a *config.PDAffinityArgs) { a.LevelPreset = tc.preset })
			mk := func(name, spine, leaf string) *v1.Node {
				labels := tc.labels(spine, leaf)
				// The agent's verdict; without it the pair is priced as a
				// host bounce (the model's one default).
				labels[topology.LabelGPUDirectRDMA] = "true"
				return withNodeLabels(st.MakeNode().Name(name), labels).Capacity(map[v1.ResourceName]string{"nvidia.com/gpu": "8"}).Obj()
			}
			unverified := withNodeLabels(st.MakeNode().Name("n5"), tc.labels("b1", "sb1")).Capacity(map[v1.ResourceName]string{"nvidia.com/gpu": "8"}).Obj()
			nodes := []*v1.Node{mk("n1", "b1", "sb1"), mk("n2", "b1", "sb1"), mk("n3", "b1", "sb2"), mk("n4", "b2", "sb1"), unverified}
			prefill := engine("p", "prefill", "g", 4).Node("n1").Obj()
			decode := engine("d", "decode", "g", 4).Obj()
			c, status := runCycle(t, pl, decode, nodes, prefill)
			require.True(t, status.IsSuccess())
			// Same leaf > same spine > a leaf of the same name under another spine.
			require.Greater(t, c.score(t, decode, "n2"), c.score(t, decode, "n3"))
			require.Greater(t, c.score(t, decode, "n3"), c.score(t, decode, "n4"))
			require.Greater(t, c.score(t, decode, "n2"), c.score(t, decode, "n5"), "same leaf, but GPUDirect RDMA not known to work")
		})
	}
}

func TestLabelPresetsReadEachStacksPods(t *testing.T) {
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		want    *Member
		wantErr string
	}{
		{name: "AIBrix StormService prefill", labels: map[string]string{
			"storm-service-name": "llama", "roleset-name": "llama-roleset-7x2", "role-name": "prefill",
			"stormservice.orchestration.aibrix.ai/role-replica-index": "0",
		}, want: &Member{Role: RolePrefill, Group: "llama", Unit: "llama/llama-roleset-7x2"}},
		{name: "AIBrix routing role is not a P/D member", labels: map[string]string{
			"storm-service-name": "llama", "roleset-name": "llama-roleset-7x2", "role-name": "routing",
		}},
		{name: "LWS DisaggregatedSet decode", labels: map[string]string{
			"disaggregatedset.x-k8s.io/name": "ds", "disaggregatedset.x-k8s.io/role": "decode", "disaggregatedset.x-k8s.io/slice": "1",
			"leaderworkerset.sigs.k8s.io/name": "ds-1-decode", "leaderworkerset.sigs.k8s.io/worker-index": "0",
		}, want: &Member{Role: RoleDecode, Group: "ds", Unit: "ds/1"}},
		{name: "Dynamo prefill worker", labels: map[string]string{
			"nvidia.com/dynamo-graph-deployment-name": "graph", "nvidia.com/dynamo-component-type": "prefill",
		}, want: &Member{Role: RolePrefill, Group: "graph"}},
		{name: "Dynamo legacy decode worker", labels: map[string]string{
			"nvidia.com/dynamo-graph-deployment-name": "graph", "nvidia.com/dynamo-component-type": "worker",
			"nvidia.com/dynamo-sub-component-type": "decode",
		}, want: &Member{Role: RoleDecode, Group: "graph"}},
		{name: "Dynamo frontend is not a P/D member", labels: map[string]string{
			"nvidia.com/dynamo-graph-deployment-name": "graph", "nvidia.com/dynamo-component-type": "frontend",
		}},
		{name: "llm-d decode pool", labels: map[string]string{
			"llm-d.ai/role": "decode", "llm-d.ai/model": "llama-3-70b", "llm-d.ai/inferenceServing": "true",
		}, want: &Member{Role: RoleDecode, Group: "llama-3-70b"}},
		{name: "llm-d aggregated engine is not a P/D member", labels: map[string]string{
			"llm-d.ai/role": "both", "llm-d.ai/model": "llama-3-70b",
		}},
		{name: "tandem labels win over a preset", labels: map[string]string{
			LabelRole: "decode", LabelGroup: "mine", "llm-d.ai/role": "prefill", "llm-d.ai/model": "theirs",
		}, want: &Member{Role: RoleDecode, Group: "mine"}},
		{name: "a PodGroup makes a unit", labels: map[string]string{
			LabelRole: "decode", LabelGroup: "g", LabelPodGroup: "g-0",
		}, want: &Member{Role: RoleDecode, Group: "g", Unit: "podgroup/g-0", PodGroup: "g-0"}},
		{name: "bad unit size", labels: map[string]string{LabelRole: "decode", LabelGroup: "g", LabelUnitSize: "four"},
			wantErr: `pod label tandem.dev/unit-size="four" is not a positive number of pods`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := newTestPlugin(t, nil)
			m, ok, err := pl.members.read(st.MakePod().Labels(tc.labels).Obj())
			if tc.wantErr != "" {
				require.True(t, ok)
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want != nil, ok, "member %+v", m)
			if tc.want != nil {
				require.Equal(t, *tc.want, m)
			}
		})
	}

	// With the presets turned off, only tandem's labels count.
	pl := newTestPlugin(t, func(a *config.PDAffinityArgs) { a.LabelPresets = []string{} })
	_, ok, _ := pl.members.read(st.MakePod().Labels(map[string]string{"llm-d.ai/role": "decode", "llm-d.ai/model": "m"}).Obj())
	require.False(t, ok)

	_, err := New(context.Background(), &config.PDAffinityArgs{LevelPreset: "tandem", SameNode: config.SameNodePrefer,
		GPUResourceName: "nvidia.com/gpu", LabelPresets: []string{"llm-d", "kserve"}}, nil)
	require.ErrorContains(t, err, `pluginConfig[PDAffinity].args.labelPresets[1]: Unsupported value: "kserve"`)
}

func TestPlacementStamp(t *testing.T) {
	pl := newTestPlugin(t, nil)
	require.Equal(t, "zone=z1,spine=s2,leaf=l1,nvlink-domain=rack1,node=r1t1", pl.Placement(node("r1t1", "z1", "s2", "l1", "rack1", 4)))
	require.Equal(t, "spine=s1,leaf=l1,node=a1", pl.Placement(node("a1", "", "s1", "l1", "", 8)))
	patch, err := pl.labelsPatch(node("a1", "", "s1", "l1", "", 8))
	require.NoError(t, err)
	require.JSONEq(t, `{"metadata":{"labels":{"tandem.dev/leaf":"l1","tandem.dev/spine":"s1"}}}`, string(patch))
}

func withNodeLabels(n *st.NodeWrapper, labels map[string]string) *st.NodeWrapper {
	for k, v := range labels {
		n = n.Label(k, v)
	}
	return n
}

func defaultArgs() *config.PDAffinityArgs {
	return &config.PDAffinityArgs{LevelPreset: "tandem", SameNode: config.SameNodePrefer, GPUResourceName: "nvidia.com/gpu"}
}

// The second prefill of a 2P2D unit goes where a decode can still join it
// on NVLink, not onto the first prefill's board, which would leave every
// prefill→decode pair crossing the leaf.
func TestSameRolePodLeavesRoomForItsPartner(t *testing.T) {
	pl := newTestPlugin(t, nil)
	p0 := engine("u-p0", "prefill", "u", 4, LabelUnitSize, "4").Node("a1").Obj()
	p1 := engine("u-p1", "prefill", "u", 4, LabelUnitSize, "4").Obj()
	c, status := runCycle(t, pl, p1, fabricNodes(), p0)
	require.True(t, status.IsSuccess(), status.Message())
	require.Greater(t, c.score(t, p1, "a2"), c.score(t, p1, "a1"), "a2 has room for a decode beside the prefill")
	// Keeping the unit together still counts: the same leaf beats another spine.
	require.Greater(t, c.score(t, p1, "a2"), c.score(t, p1, "r1t1"))

	// Once a decode is placed, decodes pair with prefills by NVLink again.
	d0 := engine("u-d0", "decode", "u", 4, LabelUnitSize, "4").Obj()
	c, status = runCycle(t, pl, d0, fabricNodes(), p0, engine("u-p1", "prefill", "u", 4, LabelUnitSize, "4").Node("a2").Obj())
	require.True(t, status.IsSuccess())
	require.Equal(t, int64(fwk.MaxNodeScore), c.score(t, d0, "a1"))
	require.Equal(t, int64(fwk.MaxNodeScore), c.score(t, d0, "a2"))
	require.Greater(t, c.score(t, d0, "a2"), c.score(t, d0, "b1"))
}

// The group's role counts come from the scheduler's pod informer through
// the group index, scheduled pods or not, and from no other group.
func TestRoleCountsReadTheGroupIndex(t *testing.T) {
	ctx := context.Background()
	pods := []runtime.Object{
		engine("p0", "prefill", "chat", 4).Node("a1").Obj(),
		engine("p1", "prefill", "chat", 4).Obj(),
		engine("d0", "decode", "chat", 4).Obj(),
		engine("x0", "decode", "other", 4).Obj(),
		engine("u0", "prefill", "chat", 4, LabelUnitSize, "2").Obj(),
		st.MakePod().Name("plain").Namespace("default").UID("plain").Obj(),
	}
	pl := plugintesting.SetupPluginWithInformers(ctx, t, New, defaultArgs(), schedcache.NewSnapshot(nil, fabricNodes()), pods).(*PDAffinity)

	incoming := engine("d1", "decode", "chat", 4).Obj()
	m, _, _ := pl.members.read(incoming)
	require.Equal(t, &[2]int{2, 1}, pl.roleCounts(incoming, m, func(peer Member) bool { return peer.Unit == "" }))
	ratio, err := pl.poolRatio(incoming, m)
	require.NoError(t, err)
	require.InDelta(t, 2.0/3, ratio, 1e-9)

	unitDecode := engine("u1", "decode", "chat", 4, LabelUnitSize, "2").Obj()
	um, _, _ := pl.members.read(unitDecode)
	require.Equal(t, &[2]int{1, 1}, pl.unitRoles(unitDecode, um))
}
