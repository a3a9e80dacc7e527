package clusterdesc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBuildDRANodes(t *testing.T) {
	c, err := Parse([]byte(`
nodes:
- {name: hgx, shape: hgx-h100, leaf: l1, gpuAllocation: dra}
- {name: tray, count: 2, shape: gb200-tray, leaf: l2, nvlinkDomain: rack-1, gpuAllocation: dra}
- {name: dp, shape: hgx-h100, leaf: l1, gpuAllocation: device-plugin}
- {name: agentless, shape: hgx-h100, leaf: l1, gpuAllocation: dra, topology: missing}
`))
	require.NoError(t, err)
	nodes := c.Build(time.Now())
	require.Len(t, nodes, 5)
	wantGPUs := map[string]int{"hgx": 8, "tray-0": 4, "tray-1": 4, "agentless": 8}
	for _, n := range nodes {
		name := n.Node.Name
		_, hasCapacity := n.Node.Status.Capacity[GPUResourceName]
		want, dra := wantGPUs[name]
		if !dra {
			require.True(t, hasCapacity, "device-plugin node %s advertises %s", name, GPUResourceName)
			require.Nil(t, n.ResourceSlice, "device-plugin node %s has no ResourceSlice", name)
			require.Equal(t, 8, n.GPUCount())
			continue
		}
		require.False(t, hasCapacity, "DRA node %s must not advertise %s", name, GPUResourceName)
		rs := n.ResourceSlice
		require.NotNil(t, rs, "DRA node %s has a ResourceSlice", name)
		require.Equal(t, NVIDIADriver, rs.Spec.Driver)
		require.Equal(t, name, *rs.Spec.NodeName)
		require.Equal(t, name, rs.Spec.Pool.Name)
		require.Len(t, rs.Spec.Devices, want)
		require.Equal(t, want, n.GPUCount())
		if name == "agentless" {
			require.Nil(t, n.Topology, "topology: missing still means no NodeTopology")
			continue
		}
		require.NotNil(t, n.Topology)
		for i, dev := range rs.Spec.Devices {
			gpu := n.Topology.Status.GPUs[i]
			require.Equal(t, fmt.Sprintf("gpu-%d", gpu.Index), dev.Name)
			require.Equal(t, "gpu", *dev.Attributes["type"].StringValue)
			require.Equal(t, gpu.UUID, *dev.Attributes["uuid"].StringValue)
			// NVML's form of the sysfs bus id.
			require.Equal(t, "0000"+strings.ToUpper(gpu.PCIBusID), *dev.Attributes["pcieBusID"].StringValue)
		}
	}
}
