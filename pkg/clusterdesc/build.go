package clusterdesc

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// GPUResourceName is the extended resource the nodes advertise GPUs as.
const GPUResourceName v1.ResourceName = "nvidia.com/gpu"

// Node is one node of the cluster and its NodeTopology, which is nil when
// the description says the agent has not reported.
type Node struct {
	Node     *v1.Node
	Topology *topologyv1alpha1.NodeTopology
	// Holders are pods outside the workload holding some of its GPUs: the
	// group's allocatedGPUs, and whatever Hold added. Create does not create
	// them; CreateHolders does.
	Holders []Holder
	// ResourceSlice is what NVIDIA's DRA driver publishes for the node's
	// GPUs on a group with gpuAllocation dra (whatever the state of its
	// NodeTopology: the driver runs without tandem's agent); nil otherwise.
	ResourceSlice *resourcev1.ResourceSlice
}

// Build makes every node of the cluster; heartbeats are relative to now.
func (c *Cluster) Build(now time.Time) []Node {
	var out []Node
	for _, g := range c.Nodes {
		for _, name := range g.NodeNames() {
			out = append(out, g.build(name, now))
		}
	}
	return out
}

func (g NodeGroup) build(name string, now time.Time) Node {
	s := shapes[g.Shape]
	nvlinkDomain := ""
	switch {
	case s.rackScale:
		nvlinkDomain = g.NVLinkDomain
	case s.islandSize > 1:
		nvlinkDomain = name
	}
	labels := map[string]string{v1.LabelHostname: name}
	for key, value := range map[string]string{
		topology.LabelZone: g.Zone, topology.LabelSpine: g.Spine, topology.LabelLeaf: g.Leaf,
		topology.LabelNVLinkDomain: nvlinkDomain,
	} {
		if value != "" {
			labels[key] = value
		}
	}
	if s.gpus > 0 {
		labels[topology.LabelGPUDirectRDMA] = fmt.Sprint(!g.GPUDirectBroken)
	}
	capacity := v1.ResourceList{
		v1.ResourceCPU:    resource.MustParse(s.cpu),
		v1.ResourceMemory: resource.MustParse(s.memory),
		v1.ResourcePods:   resource.MustParse("110"),
	}
	dra := g.GPUAllocation == GPUAllocationDRA
	if s.gpus > 0 && !dra {
		capacity[GPUResourceName] = *resource.NewQuantity(int64(s.gpus), resource.DecimalSI)
	}
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: v1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(now)}},
		},
	}
	out := Node{Node: node}
	if s.gpus > 0 && len(g.AllocatedGPUs) > 0 {
		out.Holders = []Holder{{Name: holderName(name), GPUs: slices.Clone(g.AllocatedGPUs)}}
	}
	if s.gpus == 0 {
		return out
	}
	heartbeat := now
	if g.Topology == TopologyStale {
		heartbeat = now.Add(-staleAge)
	}
	nt := &topologyv1alpha1.NodeTopology{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status:     g.topologyStatus(name, s, nvlinkDomain, heartbeat),
	}
	if dra {
		out.ResourceSlice = NVIDIAResourceSlice(nt)
	}
	if g.Topology != TopologyMissing {
		out.Topology = nt
	}
	return out
}

func (g NodeGroup) topologyStatus(name string, s shape, nvlinkDomain string, heartbeat time.Time) topologyv1alpha1.NodeTopologyStatus {
	st := topologyv1alpha1.NodeTopologyStatus{
		GPUCount:          int32(s.gpus),
		NICCount:          int32(s.nics),
		NVLinkDomain:      nvlinkDomain,
		Leaf:              g.Leaf,
		Spine:             g.Spine,
		LastHeartbeatTime: metav1.NewTime(heartbeat),
	}
	for i := 0; i < s.gpus; i++ {
		island := i / s.islandSize
		gpu := topologyv1alpha1.GPU{
			Index:     int32(i),
			UUID:      gpuUUID(name, i),
			PCIBusID:  fmt.Sprintf("0000:%02x:00.0", 0x18+i*0x10),
			NUMANode:  s.socket(i),
			Model:     s.model,
			MemoryMiB: s.memoryMiB,
			MIGMode:   migMode(slices.Contains(g.MIGGPUs, int32(i))),
			Island:    int32(island),
		}
		for p := island * s.islandSize; p < (island+1)*s.islandSize && s.islandSize > 1; p++ {
			if p != i {
				gpu.NVLinkPeers = append(gpu.NVLinkPeers, int32(p))
			}
		}
		if s.rackScale {
			gpu.Fabric = &topologyv1alpha1.GPUFabric{ClusterUUID: nvlinkDomain, CliqueID: 1, State: topologyv1alpha1.FabricCompleted, Status: "Success"}
		}
		st.GPUs = append(st.GPUs, gpu)
	}
	for n := 0; n < s.nics; n++ {
		nic := fmt.Sprintf("mlx5_%d", n)
		st.NICs = append(st.NICs, topologyv1alpha1.NIC{
			Name: nic, Port: 1,
			PCIBusID:   fmt.Sprintf("0000:%02x:00.0", 0x1a+n*0x10),
			NetDev:     fmt.Sprintf("ibp%ds0", 0x1a+n*0x10),
			LinkLayer:  s.linkLayer,
			State:      topologyv1alpha1.PortActive,
			RateGbps:   s.nicRateGbps,
			NUMANode:   int32(n * 2 / max(s.nics, 2)),
			Leaf:       g.Leaf,
			LeafSource: topologyv1alpha1.LeafSourceLabel,
			Rail:       int32(n),
		})
		for i := 0; i < s.gpus; i++ {
			st.PCIePaths = append(st.PCIePaths, topologyv1alpha1.PCIePath{GPU: int32(i), NIC: nic, Level: s.pcie(i, n)})
		}
	}
	st.GPUDirectRDMA = gpuDirect(!g.GPUDirectBroken)
	if len(g.AllocatedGPUs) > 0 {
		alloc := topologyv1alpha1.GPUAllocation{Pod: HolderPod(name)}
		for _, idx := range g.AllocatedGPUs {
			alloc.GPUs = append(alloc.GPUs, gpuUUID(name, int(idx)))
		}
		st.GPUAllocations = []topologyv1alpha1.GPUAllocation{alloc}
	}
	return st
}

func migMode(enabled bool) topologyv1alpha1.MIGMode {
	if enabled {
		return topologyv1alpha1.MIGEnabled
	}
	return topologyv1alpha1.MIGDisabled
}

func gpuDirect(ready bool) topologyv1alpha1.GPUDirectRDMA {
	acs := topologyv1alpha1.GPUDirectCheck{Name: "acs", Result: topologyv1alpha1.CheckPass, Reason: "ACSRedirectDisabled"}
	if !ready {
		acs = topologyv1alpha1.GPUDirectCheck{Name: "acs", Result: topologyv1alpha1.CheckFail, Reason: "ACSRedirectEnabled",
			Message: "P2P request redirect is enabled on a bridge between a GPU and its NIC"}
	}
	return topologyv1alpha1.GPUDirectRDMA{
		Ready: ready,
		Mode:  topologyv1alpha1.GPUDirectDMABuf,
		Checks: []topologyv1alpha1.GPUDirectCheck{
			{Name: "dma-buf", Result: topologyv1alpha1.CheckPass, Reason: "KernelAndOpenModule"},
			acs,
			{Name: "nic-ports", Result: topologyv1alpha1.CheckPass, Reason: "AllPortsActive"},
		},
	}
}

// gpuUUID is stable per node and index, shaped like NVML's.
func gpuUUID(node string, index int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", node, index)))
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Create creates the nodes and, for those that have one, their NodeTopology
// owned by the Node, with its status written through the status subresource
// as the agent writes it. DRA nodes get their ResourceSlice, owned by the
// Node as the driver's kubelet plugin makes it, and the cluster NVIDIA's
// DeviceClass for GPUs (kept if it exists).
func Create(ctx context.Context, client kubernetes.Interface, tandem versioned.Interface, nodes []Node) error {
	if slices.ContainsFunc(nodes, func(n Node) bool { return n.ResourceSlice != nil }) {
		if _, err := client.ResourceV1().DeviceClasses().Create(ctx, NVIDIADeviceClass(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating DeviceClass %s: %w", NVIDIADriver, err)
		}
	}
	for _, n := range nodes {
		node, err := client.CoreV1().Nodes().Create(ctx, n.Node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating node %s: %w", n.Node.Name, err)
		}
		if n.ResourceSlice != nil {
			rs := n.ResourceSlice.DeepCopy()
			rs.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(node, v1.SchemeGroupVersion.WithKind("Node"))}
			if _, err := client.ResourceV1().ResourceSlices().Create(ctx, rs, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("creating ResourceSlice %s: %w", rs.Name, err)
			}
		}
		if n.Topology == nil {
			continue
		}
		if err := PublishTopology(ctx, tandem, node, n.Topology); err != nil {
			return err
		}
	}
	return nil
}

// PublishTopology creates nt for node, owned by it, and writes its status.
func PublishTopology(ctx context.Context, tandem versioned.Interface, node *v1.Node, nt *topologyv1alpha1.NodeTopology) error {
	nt = nt.DeepCopy()
	nt.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(node, v1.SchemeGroupVersion.WithKind("Node"))}
	created, err := tandem.TandemV1alpha1().NodeTopologies().Create(ctx, nt, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating NodeTopology %s: %w", nt.Name, err)
	}
	created.Status = nt.Status
	if _, err := tandem.TandemV1alpha1().NodeTopologies().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing NodeTopology %s status: %w", nt.Name, err)
	}
	return nil
}
