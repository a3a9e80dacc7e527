// Package clusterdesc turns a short description of a GPU cluster into the
// Node and NodeTopology objects a real one would have: GPU capacity, the
// topology labels tandem's agent writes, and the NodeTopology it publishes.
// The integration tests, the demo and the benchmark share this format.
package clusterdesc

import (
	"bytes"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// Cluster describes the nodes of a GPU cluster, group by group.
type Cluster struct {
	Nodes []NodeGroup `json:"nodes"`
}

// TopologyState is what a node's NodeTopology looks like.
type TopologyState string

const (
	// TopologyFresh: the agent reported moments ago.
	TopologyFresh TopologyState = "fresh"
	// TopologyStale: the last heartbeat is an hour old.
	TopologyStale TopologyState = "stale"
	// TopologyMissing: no NodeTopology at all, as before the agent runs.
	TopologyMissing TopologyState = "missing"
)

// NodeGroup is one or more identical nodes under the same switches.
type NodeGroup struct {
	// Name is the node's name, or the prefix of Count names (name-0, name-1, ...).
	Name string `json:"name"`
	// Count is the number of nodes; default 1.
	Count int `json:"count,omitempty"`
	// Shape is the hardware: one of Shapes().
	Shape string `json:"shape"`
	// Zone, Spine and Leaf become the nodes' topology labels.
	Zone  string `json:"zone,omitempty"`
	Spine string `json:"spine,omitempty"`
	Leaf  string `json:"leaf,omitempty"`
	// NVLinkDomain is the multi-node NVLink domain the nodes share (an NVL72
	// rack). Shapes whose NVLink stops at the board get one domain per node.
	NVLinkDomain string `json:"nvlinkDomain,omitempty"`
	// Topology is the state of the nodes' NodeTopology; default fresh.
	Topology TopologyState `json:"topology,omitempty"`
	// GPUDirectBroken marks the nodes' GPUDirect RDMA checks as failed.
	GPUDirectBroken bool `json:"gpuDirectBroken,omitempty"`
	// AllocatedGPUs are GPU indexes the kubelet reports held by a pod
	// outside the described workload (HolderPod): listed in the
	// NodeTopology's gpuAllocations, and a Holder of the built node.
	AllocatedGPUs []int32 `json:"allocatedGPUs,omitempty"`
	// MIGGPUs are GPU indexes in MIG mode.
	MIGGPUs []int32 `json:"migGPUs,omitempty"`
	// GPUAllocation is how pods get the nodes' GPUs; default device-plugin.
	GPUAllocation GPUAllocation `json:"gpuAllocation,omitempty"`
}

// GPUAllocation is the path through which pods get a node's GPUs.
type GPUAllocation string

const (
	// GPUAllocationDevicePlugin: the node advertises nvidia.com/gpu, as
	// NVIDIA's device plugin does, and pods request that resource.
	GPUAllocationDevicePlugin GPUAllocation = "device-plugin"
	// GPUAllocationDRA: the node advertises no GPU resource; NVIDIA's DRA
	// driver publishes its GPUs in a ResourceSlice, and pods get them
	// through ResourceClaims of DeviceClass gpu.nvidia.com.
	GPUAllocationDRA GPUAllocation = "dra"
)

// Parse reads a cluster description in YAML, rejecting unknown fields, and
// validates it.
func Parse(data []byte) (*Cluster, error) {
	c := &Cluster{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("cluster description: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every group and names the field at fault.
func (c *Cluster) Validate() error {
	var errs field.ErrorList
	names := map[string]string{}
	root := field.NewPath("nodes")
	if len(c.Nodes) == 0 {
		errs = append(errs, field.Required(root, "a cluster needs at least one node group"))
	}
	for i, g := range c.Nodes {
		p := root.Index(i)
		if g.Count < 0 {
			errs = append(errs, field.Invalid(p.Child("count"), g.Count, "must not be negative"))
		}
		if _, ok := shapes[g.Shape]; !ok {
			errs = append(errs, field.NotSupported(p.Child("shape"), g.Shape, Shapes()))
		} else if shapes[g.Shape].rackScale && g.NVLinkDomain == "" {
			errs = append(errs, field.Required(p.Child("nvlinkDomain"), fmt.Sprintf("shape %s shares an NVLink domain across nodes: name it", g.Shape)))
		}
		if s, ok := shapes[g.Shape]; ok {
			for _, f := range []struct {
				name    string
				indexes []int32
			}{{"allocatedGPUs", g.AllocatedGPUs}, {"migGPUs", g.MIGGPUs}} {
				for j, idx := range f.indexes {
					if idx < 0 || int(idx) >= s.gpus {
						errs = append(errs, field.Invalid(p.Child(f.name).Index(j), idx, fmt.Sprintf("shape %s has GPUs 0 to %d", g.Shape, s.gpus-1)))
					}
				}
			}
		}
		switch g.GPUAllocation {
		case "", GPUAllocationDevicePlugin:
		case GPUAllocationDRA:
			if s, ok := shapes[g.Shape]; ok && s.gpus == 0 {
				errs = append(errs, field.Invalid(p.Child("gpuAllocation"), g.GPUAllocation, fmt.Sprintf("shape %s has no GPUs", g.Shape)))
			}
			if len(g.AllocatedGPUs) > 0 {
				errs = append(errs, field.Invalid(p.Child("allocatedGPUs"), g.AllocatedGPUs,
					"a DRA node's GPUs are held through ResourceClaims, which the kubelet's report does not list: hold them with pods and claims instead"))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("gpuAllocation"), g.GPUAllocation, []GPUAllocation{GPUAllocationDevicePlugin, GPUAllocationDRA}))
		}
		switch g.Topology {
		case "", TopologyFresh, TopologyStale, TopologyMissing:
		default:
			errs = append(errs, field.NotSupported(p.Child("topology"), g.Topology, []TopologyState{TopologyFresh, TopologyStale, TopologyMissing}))
		}
		for _, f := range []struct{ name, value string }{{"zone", g.Zone}, {"spine", g.Spine}, {"leaf", g.Leaf}, {"nvlinkDomain", g.NVLinkDomain}} {
			for _, msg := range validation.IsValidLabelValue(f.value) {
				errs = append(errs, field.Invalid(p.Child(f.name), f.value, msg))
			}
		}
		for _, name := range g.NodeNames() {
			// A node's name is also its hostname label, so it must be a
			// valid label value as well as a DNS subdomain.
			for _, msg := range append(validation.IsDNS1123Subdomain(name), validation.IsValidLabelValue(name)...) {
				errs = append(errs, field.Invalid(p.Child("name"), name, msg))
			}
			if prev, dup := names[name]; dup {
				errs = append(errs, field.Duplicate(p.Child("name"), fmt.Sprintf("%s (also from %s)", name, prev)))
			}
			names[name] = p.String()
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster description: %w", errs.ToAggregate())
	}
	return nil
}

// NodeNames are the names of the group's nodes.
func (g NodeGroup) NodeNames() []string {
	if g.Count <= 1 {
		return []string{g.Name}
	}
	names := make([]string, g.Count)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", g.Name, i)
	}
	return names
}

// String renders the description as YAML.
func (c *Cluster) String() string {
	out, err := yaml.Marshal(c)
	if err != nil {
		return err.Error()
	}
	return string(bytes.TrimSpace(out))
}

// staleAge is how old a stale NodeTopology's heartbeat is: older than any
// sensible maxTopologyAge.
const staleAge = time.Hour
