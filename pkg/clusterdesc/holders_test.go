package clusterdesc

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHold(t *testing.T) {
	c, err := Parse([]byte(`
nodes:
- {name: hgx, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1]}
- {name: gone, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, topology: missing}
- {name: cpu, shape: cpu, zone: z1}
`))
	require.NoError(t, err)
	nodes := c.Build(time.Now())
	hgx, gone, cpu := &nodes[0], &nodes[1], &nodes[2]

	// allocatedGPUs are a holder too, named as the NodeTopology reports it.
	require.Equal(t, []Holder{{Name: "holder-hgx", GPUs: []int32{0, 1}}}, hgx.Holders)
	require.Equal(t, HolderPod("hgx"), hgx.Topology.Status.GPUAllocations[0].Pod)

	require.NoError(t, hgx.Hold("job-a", []int32{4, 5}))
	allocs := hgx.Topology.Status.GPUAllocations
	require.Len(t, allocs, 2)
	require.Equal(t, HolderNamespace+"/job-a", allocs[1].Pod)
	require.Equal(t, []string{hgx.Topology.Status.GPUs[4].UUID, hgx.Topology.Status.GPUs[5].UUID}, allocs[1].GPUs)
	require.Equal(t, map[int32]bool{0: true, 1: true, 4: true, 5: true}, hgx.Held())

	require.ErrorContains(t, hgx.Hold("job-b", []int32{5}), "node hgx: holder job-b: GPU 5 is held already")
	require.ErrorContains(t, hgx.Hold("job-b", []int32{8}), "node hgx: holder job-b: no GPU 8")
	require.ErrorContains(t, hgx.Hold("job-a", []int32{6}), "holder job-a exists already")
	require.ErrorContains(t, hgx.Hold("job-b", nil), "no GPUs to hold")
	require.ErrorContains(t, cpu.Hold("job", []int32{0}), "node cpu: holder job: no GPU 0")
	require.Len(t, hgx.Holders, 2, "a refused hold changes nothing")

	// A node without a NodeTopology: one island, and nothing to report in.
	require.Equal(t, [][]int32{{0, 1, 2, 3, 4, 5, 6, 7}}, gone.Islands())
	require.NoError(t, gone.Hold("job-c", []int32{7}))
	require.Nil(t, gone.Topology)
	require.Len(t, hgx.Islands(), 1)
	require.Nil(t, cpu.Islands())

	pods := HolderPods(nodes)
	require.Len(t, pods, 3)
	for _, p := range pods {
		require.Equal(t, HolderNamespace, p.Namespace)
		require.NotEmpty(t, p.Spec.NodeName, "bound already: no scheduler places it")
		require.Empty(t, p.Spec.SchedulerName)
	}
	require.Equal(t, "job-a", pods[1].Name)
	q := pods[1].Spec.Containers[0].Resources.Requests[GPUResourceName]
	require.Equal(t, int64(2), q.Value())
	require.Equal(t, "gone", pods[2].Spec.NodeName)
}
