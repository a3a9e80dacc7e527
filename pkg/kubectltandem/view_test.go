package kubectltandem

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	tandemfake "github.com/tandem-sched/tandem/pkg/generated/clientset/versioned/fake"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// fixture is three H100 NVL boards (four 2-GPU islands each) under one
// spine, two leaves, the third with GPUDirect broken; the heartbeats are
// 90 seconds old.
func fixture(t *testing.T) ([]v1.Node, []topologyv1alpha1.NodeTopology, time.Time) {
	t.Helper()
	desc, err := clusterdesc.Parse([]byte(`
nodes:
- {name: a, count: 2, shape: h100-nvl, zone: z1, spine: s1, leaf: l1}
- {name: b, shape: h100-nvl, zone: z1, spine: s1, leaf: l2, gpuDirectBroken: true, allocatedGPUs: [0]}
`))
	require.NoError(t, err)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var nodes []v1.Node
	var nts []topologyv1alpha1.NodeTopology
	for _, n := range desc.Build(now.Add(-90 * time.Second)) {
		nodes = append(nodes, *n.Node)
		nts = append(nts, *n.Topology)
	}
	return nodes, nts, now
}

func enginePod(name, node, role, group string, gpus int64) v1.Pod {
	p := v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "serving", UID: types.UID("uid-" + name),
			Labels: map[string]string{"tandem.dev/role": role, "tandem.dev/group": group, "scheduling.x-k8s.io/pod-group": group}},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "engine", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{clusterdesc.GPUResourceName: *resource.NewQuantity(gpus, resource.DecimalSI)},
		}}}},
	}
	return p
}

func TestNodesCountFreeGPUsPerIslandAndPairsUseTheClassifier(t *testing.T) {
	nodes, nts, now := fixture(t)
	pods := []v1.Pod{
		enginePod("u-prefill-0", "a-0", "prefill", "u", 2),
		enginePod("u-decode-0", "a-0", "decode", "u", 2),
		enginePod("u-decode-1", "a-1", "decode", "u", 2),
		enginePod("v-prefill-0", "a-1", "prefill", "v", 1),
		enginePod("v-decode-0", "b", "decode", "v", 1),
		enginePod("w-decode-0", "", "decode", "w", 2),
	}
	o := DefaultOptions()
	o.Now = now
	v, err := Build(nodes, nts, pods, o)
	require.NoError(t, err)
	require.Empty(t, v.Warnings)

	byName := map[string]Node{}
	for _, n := range v.Nodes {
		byName[n.Name] = n
	}
	require.Len(t, byName, 3)
	// a-0 holds two 2-GPU pods, each on an island of its own (which ones
	// the scheduler's fit decides, by NIC nearness).
	require.Equal(t, 4, byName["a-0"].FreeGPUs)
	require.Len(t, byName["a-0"].Islands, 4)
	freeIslands := 0
	for i, is := range byName["a-0"].Islands {
		require.Equal(t, int32(i), is.ID)
		require.Equal(t, 2, is.GPUs)
		require.Contains(t, []int{0, 2}, is.Free, "a 2-GPU pod takes a whole island")
		if is.Free == 2 {
			freeIslands++
		}
	}
	require.Equal(t, 2, freeIslands)
	// a-1 holds a 2-GPU decode and a 1-GPU prefill.
	require.Equal(t, 5, byName["a-1"].FreeGPUs)
	// b: GPU 0 is the kubelet's allocation, one more is v-decode-0's; the
	// decode takes the island the allocation broke, as the scheduler's fit does.
	require.Equal(t, 6, byName["b"].FreeGPUs)
	require.Equal(t, Island{0, 2, 0}, byName["b"].Islands[0])
	require.False(t, byName["b"].GPUDirectReady)
	require.Contains(t, byName["b"].GPUDirectReason, "acs")
	require.Equal(t, 90*time.Second, byName["a-0"].HeartbeatAge)
	require.Equal(t, []string{"z1", "s1", "l1", "a-0"}, byName["a-0"].Domains)

	pairs := map[string]Pair{}
	for _, g := range v.Groups {
		for _, p := range g.Pairs {
			pairs[p.Decode] = p
		}
	}
	model := topology.DefaultCostModel()
	kv := topology.Llama3_70B_BF16().KVBytes(4096)
	require.Equal(t, Pair{Unit: "podgroup/u", Prefill: "u-prefill-0", PrefillNode: "a-0", Decode: "u-decode-0", DecodeNode: "a-0",
		Class: topology.LevelNVLinkDomain, Transfer: model.TransferTime(kv, topology.LevelNVLinkDomain)}, pairs["u-decode-0"])
	require.Equal(t, topology.PathClass(topology.LevelLeaf), pairs["u-decode-1"].Class)
	// Across leaves with GPUDirect broken on b: staged through host memory.
	require.Equal(t, topology.PathHostBounce, pairs["v-decode-0"].Class)
	require.Len(t, pairs, 3, "the pending decode has no pair")

	var groups []string
	for _, g := range v.Groups {
		groups = append(groups, g.Name)
	}
	require.Equal(t, []string{"u", "v", "w"}, groups)
	require.Equal(t, 1, v.Groups[2].Pending)

	var table bytes.Buffer
	require.NoError(t, PairsTable(&table, v))
	require.Contains(t, table.String(), "host-bounce")
	require.Contains(t, table.String(), "group serving/w: 1 of 1 pods pending")
	table.Reset()
	require.NoError(t, NodesTable(&table, v))
	require.Regexp(t, `a-0\s+z1\s+s1\s+l1\s+a-0\s+4/8\s+[02]/2 [02]/2 [02]/2 [02]/2\s+Ready\s+1m30s ago`, table.String())
	require.Contains(t, table.String(), "NotReady (GPUDirect RDMA check acs: Fail")
}

func TestMalformedNodeTopologyIsNamedAndTheRestShown(t *testing.T) {
	nodes, nts, now := fixture(t)
	nts[1].Status.GPUs[3].Index = nts[1].Status.GPUs[2].Index
	o := DefaultOptions()
	o.Now = now
	v, err := Build(nodes, nts, nil, o)
	require.NoError(t, err)
	require.Len(t, v.Warnings, 1)
	require.Equal(t, "NodeTopology a-1: status.gpus[3]: duplicate index 2", v.Warnings[0])
	require.Equal(t, v.Warnings[0], v.Nodes[1].Error)
	require.Equal(t, 8, v.Nodes[0].FreeGPUs)

	var out bytes.Buffer
	require.NoError(t, NodesTable(&out, v))
	require.Contains(t, out.String(), "malformed NodeTopology")
}

func TestOverfullNodeAndMalformedLabelsAreWarnings(t *testing.T) {
	nodes, nts, now := fixture(t)
	bad := enginePod("bad", "", "prefill", "x", 1)
	bad.Labels["tandem.dev/role"] = "prefil"
	pods := []v1.Pod{enginePod("big", "a-0", "prefill", "y", 8), enginePod("more", "a-0", "decode", "y", 2), bad}
	o := DefaultOptions()
	o.Now = now
	v, err := Build(nodes, nts, pods, o)
	require.NoError(t, err)
	require.Len(t, v.Warnings, 2)
	require.Contains(t, v.Warnings[0], "pod serving/more on node a-0: its 2 GPUs do not fit")
	require.Contains(t, v.Warnings[1], `pod serving/bad: pod label tandem.dev/role="prefil" is not one of prefill, decode`)
}

func TestCollectOnlyReads(t *testing.T) {
	nodes, nts, now := fixture(t)
	var kubeObjs, tandemObjs []runtime.Object
	for i := range nodes {
		kubeObjs = append(kubeObjs, &nodes[i])
		tandemObjs = append(tandemObjs, &nts[i])
	}
	p := enginePod("u-prefill-0", "a-0", "prefill", "u", 2)
	kubeObjs = append(kubeObjs, &p)
	kube := kubefake.NewClientset(kubeObjs...)
	tandem := tandemfake.NewSimpleClientset(tandemObjs...)
	o := DefaultOptions()
	o.Now = now
	v, err := Collect(context.Background(), kube, tandem, o)
	require.NoError(t, err)
	require.Len(t, v.Nodes, 3)
	for _, actions := range [][]k8stesting.Action{kube.Actions(), tandem.Actions()} {
		for _, a := range actions {
			require.Equal(t, "list", a.GetVerb(), "%s %s", a.GetVerb(), a.GetResource())
		}
	}

	var out bytes.Buffer
	require.NoError(t, JSON(&out, v))
	var back View
	require.NoError(t, json.Unmarshal(out.Bytes(), &back))
	require.Equal(t, v.Levels, back.Levels)
	require.Equal(t, "a-0", back.Nodes[0].Name)
}

func TestPictureNamesEveryNodeAndPair(t *testing.T) {
	nodes, nts, now := fixture(t)
	pods := []v1.Pod{
		enginePod("u-prefill-0", "a-0", "prefill", "u", 2),
		enginePod("u-decode-0", "a-1", "decode", "u", 2),
		enginePod("v-decode-0", "b", "decode", "v", 1),
	}
	o := DefaultOptions()
	o.Now = now
	v, err := Build(nodes, nts, pods, o)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, HTML(&out, v))
	page := out.String()
	for _, n := range []string{"a-0", "a-1", "b"} {
		require.Contains(t, page, `data-node="`+n+`"`)
	}
	require.Contains(t, page, `data-decode="u-decode-0" data-class="leaf"`)
	require.Contains(t, page, `data-decode="v-decode-0" data-class="unpaired"`)
	require.Equal(t, 1, strings.Count(page, "http://www.w3.org/2000/svg"))
	require.NotContains(t, strings.Replace(page, "http://www.w3.org/2000/svg", "", 1), "http", "the page loads nothing")
	require.NotContains(t, page, "src=")
}

// A pod whose GPUs come from a DRA ResourceClaim asks for no nvidia.com/gpu;
// once the agent reports the GPUs the kubelet prepared for its claim, they
// count as used, once, beside a device-plugin pod's.
func TestNodesCountDRAGPUsTheAgentReports(t *testing.T) {
	nodes, nts, now := fixture(t)
	dra := enginePod("d-decode-0", "a-1", "decode", "d", 0)
	dra.Spec.Containers[0].Resources = v1.ResourceRequirements{Claims: []v1.ResourceClaim{{Name: "gpus"}}}
	dra.Spec.ResourceClaims = []v1.PodResourceClaim{{Name: "gpus", ResourceClaimName: ptr.To("d-decode-0-gpus")}}
	pods := []v1.Pod{dra, enginePod("v-prefill-0", "a-1", "prefill", "v", 1)}
	for i := range nts {
		if nts[i].Name == "a-1" {
			g := nts[i].Status.GPUs
			nts[i].Status.GPUAllocations = []topologyv1alpha1.GPUAllocation{
				{Pod: "serving/d-decode-0", GPUs: []string{g[2].UUID, g[3].UUID}},
				{Pod: "serving/v-prefill-0", GPUs: []string{g[0].UUID}},
			}
		}
	}
	o := DefaultOptions()
	o.Now = now
	v, err := Build(nodes, nts, pods, o)
	require.NoError(t, err)
	require.Empty(t, v.Warnings)
	for _, n := range v.Nodes {
		if n.Name == "a-1" {
			require.Equal(t, 5, n.FreeGPUs, "8 GPUs less the DRA pod's 2 and the device-plugin pod's 1")
			require.Equal(t, []Island{{0, 2, 1}, {1, 2, 0}, {2, 2, 2}, {3, 2, 2}}, n.Islands)
		}
	}
}
