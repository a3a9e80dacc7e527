package clusterdesc

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/topology"
)

const testCluster = `
nodes:
- {name: hgx, count: 2, shape: hgx-h100, zone: z1, spine: spine-1, leaf: leaf-1}
- {name: tray, count: 2, shape: gb200-tray, zone: z1, spine: spine-2, leaf: leaf-2, nvlinkDomain: rack-1}
- {name: pcie, shape: l40s, zone: z1, spine: spine-1, leaf: leaf-1}
- {name: nvl, shape: h100-nvl, zone: z1, spine: spine-1, leaf: leaf-3, topology: stale, gpuDirectBroken: true}
- {name: gone, count: 2, shape: hgx-h100, zone: z1, spine: spine-1, leaf: leaf-1, topology: missing}
- {name: cpu, count: 3, shape: cpu, zone: z1}
`

// wantNode is what the test cluster's nodes must look like.
type wantNode struct {
	name         string
	shape        string
	gpus         int64
	nics         int
	nvlinkDomain string // "" means no label
	spine, leaf  string
	topology     TopologyState // "" means no NodeTopology
	gpuDirect    bool
}

var testClusterNodes = []wantNode{
	{name: "hgx-0", shape: "hgx-h100", gpus: 8, nics: 8, nvlinkDomain: "hgx-0", spine: "spine-1", leaf: "leaf-1", topology: TopologyFresh, gpuDirect: true},
	{name: "hgx-1", shape: "hgx-h100", gpus: 8, nics: 8, nvlinkDomain: "hgx-1", spine: "spine-1", leaf: "leaf-1", topology: TopologyFresh, gpuDirect: true},
	{name: "tray-0", shape: "gb200-tray", gpus: 4, nics: 4, nvlinkDomain: "rack-1", spine: "spine-2", leaf: "leaf-2", topology: TopologyFresh, gpuDirect: true},
	{name: "tray-1", shape: "gb200-tray", gpus: 4, nics: 4, nvlinkDomain: "rack-1", spine: "spine-2", leaf: "leaf-2", topology: TopologyFresh, gpuDirect: true},
	{name: "pcie", shape: "l40s", gpus: 8, nics: 2, spine: "spine-1", leaf: "leaf-1", topology: TopologyFresh, gpuDirect: true},
	{name: "nvl", shape: "h100-nvl", gpus: 8, nics: 2, nvlinkDomain: "nvl", spine: "spine-1", leaf: "leaf-3", topology: TopologyStale, gpuDirect: false},
	{name: "gone-0", shape: "hgx-h100", gpus: 8, nvlinkDomain: "gone-0", spine: "spine-1", leaf: "leaf-1", gpuDirect: true},
	{name: "gone-1", shape: "hgx-h100", gpus: 8, nvlinkDomain: "gone-1", spine: "spine-1", leaf: "leaf-1", gpuDirect: true},
	{name: "cpu-0", shape: "cpu"},
	{name: "cpu-1", shape: "cpu"},
	{name: "cpu-2", shape: "cpu"},
}

func TestBuild(t *testing.T) {
	c, err := Parse([]byte(testCluster))
	require.NoError(t, err)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	nodes := c.Build(now)
	require.Len(t, nodes, len(testClusterNodes))

	for i, want := range testClusterNodes {
		t.Run(want.name, func(t *testing.T) {
			n := nodes[i]
			node := n.Node
			require.Equal(t, want.name, node.Name)

			// Capacity: GPUs only on GPU shapes, and allocatable like capacity.
			q, ok := node.Status.Capacity[GPUResourceName]
			if want.gpus == 0 {
				require.False(t, ok, "a CPU node advertises no GPUs")
			} else {
				require.True(t, ok)
				require.Equal(t, want.gpus, q.Value())
			}
			require.Equal(t, node.Status.Capacity, node.Status.Allocatable)
			require.Len(t, node.Status.Conditions, 1)
			require.Equal(t, v1.NodeReady, node.Status.Conditions[0].Type)
			require.Equal(t, v1.ConditionTrue, node.Status.Conditions[0].Status)

			// Labels, as the agent writes them.
			require.Equal(t, want.name, node.Labels[v1.LabelHostname])
			require.Equal(t, "z1", node.Labels[topology.LabelZone])
			requireLabel(t, node, topology.LabelSpine, want.spine)
			requireLabel(t, node, topology.LabelLeaf, want.leaf)
			requireLabel(t, node, topology.LabelNVLinkDomain, want.nvlinkDomain)
			if want.gpus > 0 {
				require.Equal(t, fmt.Sprint(want.gpuDirect), node.Labels[topology.LabelGPUDirectRDMA])
			} else {
				requireLabel(t, node, topology.LabelGPUDirectRDMA, "")
			}
			for k, v := range node.Labels {
				require.Empty(t, validation.IsQualifiedName(k), "label key %q", k)
				require.Empty(t, validation.IsValidLabelValue(v), "label %s=%q", k, v)
			}

			if want.topology == "" {
				require.Nil(t, n.Topology)
				return
			}
			require.NotNil(t, n.Topology)
			nt := n.Topology
			require.Equal(t, want.name, nt.Name)
			st := nt.Status

			wantHeartbeat := now
			if want.topology == TopologyStale {
				wantHeartbeat = now.Add(-time.Hour)
			}
			require.True(t, wantHeartbeat.Equal(st.LastHeartbeatTime.Time), "heartbeat %s, want %s", st.LastHeartbeatTime, wantHeartbeat)

			require.Len(t, st.GPUs, int(want.gpus))
			require.Len(t, st.NICs, want.nics)
			require.Equal(t, int32(len(st.GPUs)), st.GPUCount)
			require.Equal(t, int32(len(st.NICs)), st.NICCount)
			require.Equal(t, want.nvlinkDomain, st.NVLinkDomain)
			require.Equal(t, want.leaf, st.Leaf)
			require.Equal(t, want.spine, st.Spine)
			require.Equal(t, want.gpuDirect, st.GPUDirectRDMA.Ready)

			// A GPU's peers are the other GPUs of its island.
			uuids := map[string]bool{}
			for i, g := range st.GPUs {
				require.Equal(t, int32(i), g.Index)
				for _, p := range g.NVLinkPeers {
					require.Equal(t, g.Island, st.GPUs[p].Island, "GPU %d peers with GPU %d of another island", g.Index, p)
				}
				require.False(t, uuids[g.UUID], "duplicate UUID %s", g.UUID)
				uuids[g.UUID] = true
				require.NotContains(t, g.NVLinkPeers, g.Index, "a GPU is not its own peer")
			}

			// One PCIe path per GPU and NIC, no pair twice.
			require.Len(t, st.PCIePaths, len(st.GPUs)*len(st.NICs))
			type pair struct {
				gpu int32
				nic string
			}
			pairs := map[pair]topologyv1alpha1.PCIeLevel{}
			for _, p := range st.PCIePaths {
				_, dup := pairs[pair{p.GPU, p.NIC}]
				require.False(t, dup, "PCIe path %d-%s listed twice", p.GPU, p.NIC)
				pairs[pair{p.GPU, p.NIC}] = p.Level
			}
			if want.shape == "hgx-h100" {
				for i := range st.GPUs {
					require.Equal(t, topologyv1alpha1.PCIeLevelPIX, pairs[pair{int32(i), fmt.Sprintf("mlx5_%d", i)}], "GPU %d and mlx5_%d", i, i)
				}
			}
		})
	}
}

func requireLabel(t *testing.T, node *v1.Node, key, want string) {
	t.Helper()
	got, ok := node.Labels[key]
	if want == "" {
		require.False(t, ok, "label %s=%q should be absent", key, got)
		return
	}
	require.True(t, ok, "label %s is missing", key)
	require.Equal(t, want, got, "label %s", key)
}

func TestBuildIslands(t *testing.T) {
	tests := []struct {
		shape       string
		extra       string
		wantIslands [][]int32
	}{
		{shape: "hgx-h100", wantIslands: [][]int32{{0, 1, 2, 3, 4, 5, 6, 7}}},
		{shape: "h100-nvl", wantIslands: [][]int32{{0, 1}, {2, 3}, {4, 5}, {6, 7}}},
		{shape: "l40s", wantIslands: [][]int32{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}},
		{shape: "gb200-tray", extra: ", nvlinkDomain: rack-1", wantIslands: [][]int32{{0, 1, 2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.shape, func(t *testing.T) {
			c, err := Parse([]byte(`nodes: [{name: node, shape: ` + tt.shape + tt.extra + `}]`))
			require.NoError(t, err)
			nodes := c.Build(time.Now())
			require.Len(t, nodes, 1)
			require.NotNil(t, nodes[0].Topology)
			require.Equal(t, tt.wantIslands, nodes[0].Topology.Status.Islands())
		})
	}
}

func TestBuildCapacity(t *testing.T) {
	c, err := Parse([]byte(`nodes: [{name: tray, shape: gb200-tray, nvlinkDomain: rack-1}]`))
	require.NoError(t, err)
	nodes := c.Build(time.Now())
	require.Len(t, nodes, 1)
	// A group of one is named after the group, without a suffix.
	require.Equal(t, "tray", nodes[0].Node.Name)
	want := resource.MustParse("4")
	got := nodes[0].Node.Status.Capacity[GPUResourceName]
	require.Zero(t, want.Cmp(got), "GPU capacity %s, want %s", got.String(), want.String())
	for _, g := range nodes[0].Topology.Status.GPUs {
		require.NotNil(t, g.Fabric, "GB200 GPUs report their NVLink fabric")
		require.Equal(t, "rack-1", g.Fabric.ClusterUUID)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantErrs []string
	}{
		{
			name: "unknown shape",
			yaml: `
nodes:
- {name: a, shape: hgx-h100}
- {name: b, shape: hgx-b200}
`,
			wantErrs: []string{`nodes[1].shape: Unsupported value: "hgx-b200"`, `supported values: "cpu", "gb200-tray", "h100-nvl", "hgx-h100"`},
		},
		{
			name: "unknown field",
			yaml: `
nodes:
- {name: a, shape: hgx-h100, rack: r1}
`,
			// encoding/json names the field but not the group it is in.
			wantErrs: []string{"cluster description", `unknown field "rack"`},
		},
		{
			name: "unknown top-level field",
			yaml: `
node:
- {name: a, shape: hgx-h100}
`,
			wantErrs: []string{`unknown field "node"`},
		},
		{
			name: "gb200-tray without nvlinkDomain",
			yaml: `
nodes:
- {name: a, shape: hgx-h100}
- {name: t, count: 4, shape: gb200-tray}
`,
			wantErrs: []string{"nodes[1].nvlinkDomain: Required value", "gb200-tray"},
		},
		{
			name: "duplicate node names across groups",
			yaml: `
nodes:
- {name: a, count: 3, shape: hgx-h100}
- {name: a-1, shape: cpu}
`,
			wantErrs: []string{`nodes[1].name: Duplicate value: "a-1 (also from nodes[0])"`},
		},
		{
			name: "duplicate single-node groups",
			yaml: `
nodes:
- {name: a, shape: cpu}
- {name: a, shape: cpu}
`,
			wantErrs: []string{`nodes[1].name: Duplicate value`},
		},
		{
			name: "invalid leaf label value",
			yaml: `
nodes:
- {name: a, shape: hgx-h100, leaf: "leaf 1"}
`,
			wantErrs: []string{`nodes[0].leaf: Invalid value: "leaf 1"`},
		},
		{
			name: "invalid nvlinkDomain label value",
			yaml: `
nodes:
- {name: a, shape: cpu}
- {name: t, shape: gb200-tray, nvlinkDomain: "rack/1"}
`,
			wantErrs: []string{`nodes[1].nvlinkDomain: Invalid value: "rack/1"`},
		},
		{
			name:     "empty node list",
			yaml:     `nodes: []`,
			wantErrs: []string{"nodes: Required value"},
		},
		{
			name:     "empty document",
			yaml:     ``,
			wantErrs: []string{"nodes: Required value"},
		},
		{
			name: "negative count",
			yaml: `
nodes:
- {name: a, count: -1, shape: cpu}
`,
			wantErrs: []string{"nodes[0].count: Invalid value: -1"},
		},
		{
			name: "unknown topology state",
			yaml: `
nodes:
- {name: a, shape: hgx-h100, topology: old}
`,
			wantErrs: []string{`nodes[0].topology: Unsupported value: "old"`},
		},
		{
			name: "invalid node name",
			yaml: `
nodes:
- {name: Node_A, shape: cpu}
`,
			wantErrs: []string{`nodes[0].name: Invalid value: "Node_A"`},
		},
		{
			name: "unknown GPU allocation path",
			yaml: `
nodes:
- {name: a, shape: hgx-h100, gpuAllocation: mig}
`,
			wantErrs: []string{`nodes[0].gpuAllocation: Unsupported value: "mig"`, `"device-plugin", "dra"`},
		},
		{
			name: "DRA on a node without GPUs",
			yaml: `
nodes:
- {name: a, shape: cpu, gpuAllocation: dra}
`,
			wantErrs: []string{`nodes[0].gpuAllocation: Invalid value: "dra"`, "shape cpu has no GPUs"},
		},
		{
			name: "GPUs held on a DRA node without claims",
			yaml: `
nodes:
- {name: a, shape: hgx-h100, gpuAllocation: dra, allocatedGPUs: [0]}
`,
			wantErrs: []string{"nodes[0].allocatedGPUs: Invalid value", "ResourceClaims"},
		},
		{
			name: "every problem is reported",
			yaml: `
nodes:
- {name: a, shape: nope}
- {name: b, shape: gb200-tray, spine: "bad spine"}
`,
			wantErrs: []string{"nodes[0].shape", "nodes[1].nvlinkDomain", "nodes[1].spine"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			require.Nil(t, c)
			require.Error(t, err)
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// The demo reads this file; it must stay valid.
func TestParseDemoCluster(t *testing.T) {
	data, err := os.ReadFile("../../cmd/demo/cluster.yaml")
	require.NoError(t, err)
	c, err := Parse(data)
	require.NoError(t, err)
	require.NotEmpty(t, c.Build(time.Now()))
}
