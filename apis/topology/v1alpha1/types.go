package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ntopo
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="GPUs",type=integer,JSONPath=`.status.gpuCount`
// +kubebuilder:printcolumn:name="NICs",type=integer,JSONPath=`.status.nicCount`
// +kubebuilder:printcolumn:name="NVLink-Domain",type=string,JSONPath=`.status.nvlinkDomain`
// +kubebuilder:printcolumn:name="Spine",type=string,JSONPath=`.status.spine`,priority=1
// +kubebuilder:printcolumn:name="Leaf",type=string,JSONPath=`.status.leaf`
// +kubebuilder:printcolumn:name="GPUDirect",type=boolean,JSONPath=`.status.gpuDirectRDMA.ready`
// +kubebuilder:printcolumn:name="GPUDirect-Reason",type=string,JSONPath=`.status.conditions[?(@.type=="GPUDirectRDMAReady")].reason`,priority=1
// +kubebuilder:printcolumn:name="Heartbeat",type=date,JSONPath=`.status.lastHeartbeatTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// NodeTopology is the GPU, NVLink, NIC and fabric picture of one node. It is
// named after the node, owned by the Node object (so it is garbage-collected
// with it), and written only by that node's tandem agent. Everything in it is
// observed state, so it lives in status.
type NodeTopology struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status NodeTopologyStatus `json:"status,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// NodeTopologyList is a list of NodeTopology objects.
type NodeTopologyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeTopology `json:"items"`
}

// The bounds below are generous for today's hardware (8 GPUs and 8-10 NICs on
// an HGX board, 4 GPUs per GB200 tray) and keep CEL rule costs bounded.
const (
	MaxGPUs    = 64
	MaxNICs    = 64
	MaxNVLinks = 18
)

// NodeTopologyStatus is what the agent observed on the node.
// +kubebuilder:validation:XValidation:rule="self.gpuCount == (has(self.gpus) ? size(self.gpus) : 0)",message="gpuCount must equal the number of gpus"
// +kubebuilder:validation:XValidation:rule="self.nicCount == (has(self.nics) ? size(self.nics) : 0)",message="nicCount must equal the number of nics"
// +kubebuilder:validation:XValidation:rule="!has(self.gpus) || self.gpus.all(g, self.gpus.exists_one(h, h.uuid == g.uuid))",message="each GPU's uuid must be unique"
// +kubebuilder:validation:XValidation:rule="!has(self.gpus) || self.gpus.all(g, !has(g.nvlinkPeers) || g.nvlinkPeers.all(p, self.gpus.exists(h, h.index == p && h.island == g.island)))",message="nvlinkPeers must name GPUs of this node on the GPU's own island"
// +kubebuilder:validation:XValidation:rule="!has(self.gpuDirectRDMA) || !has(self.gpuDirectRDMA.gpus) || self.gpuDirectRDMA.gpus.all(r, has(self.gpus) && self.gpus.exists(g, g.index == r.gpu))",message="each gpuDirectRDMA.gpus entry must name a GPU in status.gpus"
// +kubebuilder:validation:XValidation:rule="!has(self.gpuDirectRDMA) || !has(self.gpuDirectRDMA.gpus) || self.gpuDirectRDMA.gpus.all(r, !has(r.nics) || r.nics.all(n, has(self.nics) && self.nics.exists(x, x.name == n)))",message="each NIC of a gpuDirectRDMA.gpus entry must be in status.nics"
type NodeTopologyStatus struct {
	// GPUCount is the number of GPUs listed; kept beside the list for printer columns.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	GPUCount int32 `json:"gpuCount"`

	// NICCount is the number of RDMA NICs listed; kept beside the list for printer columns.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	NICCount int32 `json:"nicCount"`

	// GPUs on the node, one entry per physical GPU.
	// +optional
	// +listType=map
	// +listMapKey=index
	// +kubebuilder:validation:MaxItems=64
	GPUs []GPU `json:"gpus,omitempty"`

	// NICs are the node's RDMA-capable network devices.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	NICs []NIC `json:"nics,omitempty"`

	// PCIePaths is the GPU-to-NIC PCIe level matrix, one entry per (GPU, NIC)
	// pair, as `nvidia-smi topo -m` and NCCL define the levels.
	// +optional
	// +listType=map
	// +listMapKey=gpu
	// +listMapKey=nic
	// +kubebuilder:validation:MaxItems=4096
	PCIePaths []PCIePath `json:"pciePaths,omitempty"`

	// NVLinkDomain is the node's NVLink domain: the multi-node NVLink clique
	// (cluster UUID and clique id) on GB200 NVL72, or the node itself where
	// NVLink stops at the board. Empty when the GPUs have no NVLink.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	NVLinkDomain string `json:"nvlinkDomain,omitempty"`

	// Leaf is the node's leaf switch: the one a strict majority of the
	// node's NICs attach to, or the only one any NIC is known to reach. It is
	// empty when no NIC's leaf is known, and when the NICs reach several
	// leaves with none holding a majority, as on a rail-optimised fabric
	// (condition LeafDiscovered, reason MultiRail); each NIC's own leaf is in
	// nics.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Leaf string `json:"leaf,omitempty"`

	// Spine is the spine or block above the leaf, where a source reports it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Spine string `json:"spine,omitempty"`

	// GPUDirectRDMA says whether a NIC can read and write GPU memory directly,
	// and why not when it cannot.
	// +optional
	GPUDirectRDMA GPUDirectRDMA `json:"gpuDirectRDMA,omitempty"`

	// GPUAllocations are the GPUs the kubelet has assigned to containers, one
	// entry per pod, from its pod-resources API. Naming the pod lets the
	// scheduler tell which of its own recent placements the report reflects.
	// +optional
	// +listType=map
	// +listMapKey=pod
	// +kubebuilder:validation:MaxItems=256
	GPUAllocations []GPUAllocation `json:"gpuAllocations,omitempty"`

	// LastHeartbeatTime is when the agent last confirmed this picture, whether
	// or not anything changed. The scheduler treats an older one as stale.
	// +optional
	LastHeartbeatTime metav1.Time `json:"lastHeartbeatTime,omitempty"`

	// Conditions report discovery problems (no driver, a GPU fallen off the
	// bus, an unreadable sysfs file) without losing what was discovered.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// GPUAllocation is the GPUs one pod holds.
type GPUAllocation struct {
	// Pod is the pod's namespace/name.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=317
	Pod string `json:"pod"`
	// GPUs are the UUIDs of the pod's GPUs.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	GPUs []string `json:"gpus"`
}

// MIGMode is whether a GPU is partitioned into MIG instances.
// +kubebuilder:validation:Enum=Disabled;Enabled
type MIGMode string

const (
	MIGDisabled MIGMode = "Disabled"
	MIGEnabled  MIGMode = "Enabled"
)

// GPU is one physical GPU.
// +kubebuilder:validation:XValidation:rule="!has(self.nvlinkPeers) || !(self.index in self.nvlinkPeers)",message="a GPU is not its own NVLink peer"
type GPU struct {
	// Index is the NVML device index.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=63
	Index int32 `json:"index"`

	// UUID is the NVML UUID, as device plugins and the kubelet name the GPU.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	UUID string `json:"uuid"`

	// PCIBusID in sysfs form, domain:bus:device.function in lower case.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`
	PCIBusID string `json:"pciBusID"`

	// NUMANode the GPU is attached to; -1 when the platform does not say.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	NUMANode int32 `json:"numaNode,omitempty"`

	// Model is the product name NVML reports.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Model string `json:"model,omitempty"`

	// MemoryMiB is the framebuffer size.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MemoryMiB int64 `json:"memoryMiB,omitempty"`

	// MIGMode is the current MIG mode.
	// +optional
	MIGMode MIGMode `json:"migMode,omitempty"`

	// NVLinks are the GPU's NVLink links, active or not.
	// +optional
	// +listType=map
	// +listMapKey=link
	// +kubebuilder:validation:MaxItems=18
	NVLinks []NVLink `json:"nvlinks,omitempty"`

	// NVLinkPeers are the indexes of the GPUs on this node this GPU reaches
	// over NVLink with P2P enabled.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	NVLinkPeers []int32 `json:"nvlinkPeers,omitempty"`

	// Island is the id of the NVLink island this GPU belongs to: the GPUs
	// joined by NVLink with P2P (all GPUs behind one NVSwitch, the pairs of
	// an NVL bridge board, or a single GPU with no NVLink), the connected
	// set of nvlinkPeers. It is the one place an island's membership is
	// published.
	// +kubebuilder:validation:Minimum=0
	Island int32 `json:"island"`

	// Fabric is the multi-node NVLink fabric state, on GPUs that have one.
	// +optional
	Fabric *GPUFabric `json:"fabric,omitempty"`
}

// NVLinkState is whether an NVLink link is up.
// +kubebuilder:validation:Enum=Active;Inactive
type NVLinkState string

const (
	NVLinkActive   NVLinkState = "Active"
	NVLinkInactive NVLinkState = "Inactive"
)

// NVLinkRemote is what sits at the far end of an NVLink link.
// +kubebuilder:validation:Enum=GPU;NVSwitch;Unknown
type NVLinkRemote string

const (
	NVLinkRemoteGPU      NVLinkRemote = "GPU"
	NVLinkRemoteNVSwitch NVLinkRemote = "NVSwitch"
	NVLinkRemoteUnknown  NVLinkRemote = "Unknown"
)

// NVLink is one NVLink link of a GPU.
type NVLink struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=17
	Link  int32       `json:"link"`
	State NVLinkState `json:"state"`
	// +optional
	RemoteType NVLinkRemote `json:"remoteType,omitempty"`
	// RemotePCIBusID is the far end's PCI id in sysfs form.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	RemotePCIBusID string `json:"remotePCIBusID,omitempty"`
}

// FabricState is the multi-node NVLink fabric registration state NVML reports.
// +kubebuilder:validation:Enum=NotSupported;NotStarted;InProgress;Completed
type FabricState string

const (
	FabricNotSupported FabricState = "NotSupported"
	FabricNotStarted   FabricState = "NotStarted"
	FabricInProgress   FabricState = "InProgress"
	FabricCompleted    FabricState = "Completed"
)

// GPUFabric is a GPU's place in a multi-node NVLink fabric (GB200 NVL72).
type GPUFabric struct {
	// ClusterUUID identifies the NVLink domain (the rack).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ClusterUUID string `json:"clusterUUID,omitempty"`
	// CliqueID identifies the partition of the domain the GPU may talk to.
	// +optional
	// +kubebuilder:validation:Minimum=0
	CliqueID int64       `json:"cliqueID,omitempty"`
	State    FabricState `json:"state"`
	// Status is the fabric manager's health summary, where NVML gives one.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Status string `json:"status,omitempty"`
}

// LinkLayer is the RDMA link layer of a NIC port: InfiniBand, RoCE, or AWS's
// Elastic Fabric Adapter (SRD over AWS's own fabric; its ports report no
// link layer of their own).
// +kubebuilder:validation:Enum=IB;RoCE;EFA
type LinkLayer string

const (
	LinkLayerInfiniBand LinkLayer = "IB"
	LinkLayerRoCE       LinkLayer = "RoCE"
	LinkLayerEFA        LinkLayer = "EFA"
)

// PortState is an RDMA port's logical state, as sysfs reports it.
// +kubebuilder:validation:Enum=Down;Init;Armed;Active;ActiveDefer;Unknown
type PortState string

const (
	PortDown        PortState = "Down"
	PortInit        PortState = "Init"
	PortArmed       PortState = "Armed"
	PortActive      PortState = "Active"
	PortActiveDefer PortState = "ActiveDefer"
	PortUnknown     PortState = "Unknown"
)

// LeafSource says how the agent learnt a NIC's leaf switch.
// +kubebuilder:validation:Enum=static;label;lldp;infiniband
type LeafSource string

const (
	LeafSourceStatic     LeafSource = "static"
	LeafSourceLabel      LeafSource = "label"
	LeafSourceLLDP       LeafSource = "lldp"
	LeafSourceInfiniBand LeafSource = "infiniband"
)

// NIC is one RDMA device port.
type NIC struct {
	// Name is the RDMA device name, such as mlx5_0.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Name string `json:"name"`
	// Port is the RDMA port number on the device.
	// +optional
	// +kubebuilder:validation:Minimum=1
	Port int32 `json:"port,omitempty"`
	// PCIBusID in sysfs form.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`
	PCIBusID string `json:"pciBusID"`
	// DataDirectPCIBusID is the NIC's Data Direct DMA function (ConnectX-8
	// on Grace trays), a second PCI function beside the GPU through which
	// the NIC's DMA reaches GPU memory; the PCIe paths of this NIC are
	// measured from it. Empty when the NIC has none.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`
	DataDirectPCIBusID string `json:"dataDirectPCIBusID,omitempty"`
	// NetDev is the network interface bound to the port, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	NetDev    string    `json:"netDev,omitempty"`
	LinkLayer LinkLayer `json:"linkLayer"`
	State     PortState `json:"state"`
	// RateGbps is the port's link rate.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	RateGbps int32 `json:"rateGbps,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=-1
	NUMANode int32 `json:"numaNode,omitempty"`
	// NodeGUID is the device's node GUID.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	NodeGUID string `json:"nodeGUID,omitempty"`
	// Leaf is the id of the leaf switch the port is cabled to.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Leaf string `json:"leaf,omitempty"`
	// +optional
	LeafSource LeafSource `json:"leafSource,omitempty"`
	// Rail is the rail index in a rail-optimised fabric: NICs with the same
	// rail on different nodes share a leaf.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Rail int32 `json:"rail,omitempty"`
}

// PCIeLevel is how far apart two PCIe devices sit, nearest first, as
// `nvidia-smi topo -m` and NCCL name it: PIX one PCIe switch, PXB several
// switches without the host bridge, PHB through the CPU's host bridge, NODE
// across host bridges within a NUMA node, SYS across the CPU interconnect.
// +kubebuilder:validation:Enum=PIX;PXB;PHB;NODE;SYS
type PCIeLevel string

const (
	PCIeLevelPIX  PCIeLevel = "PIX"
	PCIeLevelPXB  PCIeLevel = "PXB"
	PCIeLevelPHB  PCIeLevel = "PHB"
	PCIeLevelNODE PCIeLevel = "NODE"
	PCIeLevelSYS  PCIeLevel = "SYS"
)

// PCIePath is the PCIe level between one GPU and one NIC.
type PCIePath struct {
	// GPU is the GPU's index.
	// +kubebuilder:validation:Minimum=0
	GPU int32 `json:"gpu"`
	// NIC is the NIC's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	NIC   string    `json:"nic"`
	Level PCIeLevel `json:"level"`
}

// GPUDirectMode is how the NIC driver reaches GPU memory.
// +kubebuilder:validation:Enum=dma-buf;peermem;none
type GPUDirectMode string

const (
	GPUDirectDMABuf  GPUDirectMode = "dma-buf"
	GPUDirectPeerMem GPUDirectMode = "peermem"
	GPUDirectNone    GPUDirectMode = "none"
)

// CheckResult is the outcome of one GPUDirect RDMA check.
// +kubebuilder:validation:Enum=Pass;Fail;Unknown
type CheckResult string

const (
	CheckPass    CheckResult = "Pass"
	CheckFail    CheckResult = "Fail"
	CheckUnknown CheckResult = "Unknown"
)

// GPUDirectRDMA is whether GPUDirect RDMA works end to end on the node.
// +kubebuilder:validation:XValidation:rule="!self.ready || !has(self.checks) || self.checks.all(c, c.result != 'Fail')",message="ready must be false when a check failed"
// +kubebuilder:validation:XValidation:rule="!self.ready || !has(self.gpus) || self.gpus.all(g, g.ready || !has(g.nics))",message="ready must be false when a GPU with NICs is not ready"
// +kubebuilder:validation:XValidation:rule="!has(self.gpus) || self.gpus.all(g, !has(g.blockingChecks) || g.blockingChecks.all(b, has(self.checks) && self.checks.exists(c, c.name == b)))",message="each of a GPU's blockingChecks must name a check in checks"
type GPUDirectRDMA struct {
	// Ready is the node's verdict, for the GPUDirectRDMAReady condition and
	// the tandem.dev/gpudirect-rdma label: true when every check passed over
	// every GPU's NICs, but for an advisory one left Unknown (ACS state the
	// unprivileged agent cannot read); never with a failed check. When it is
	// true, every GPU in gpus that has NICs is ready.
	Ready bool `json:"ready"`
	// +optional
	Mode GPUDirectMode `json:"mode,omitempty"`
	// Checks are every check the agent ran, with its result and reason.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Checks []GPUDirectCheck `json:"checks,omitempty"`
	// GPUs is the readiness of each GPU through its own NICs (those at its
	// nearest PCIe level), so that on a node where only some GPUs sit near a
	// NIC those GPUs can still take RDMA pods. The node-wide checks (devices,
	// gpu-memory-access, iommu) count for every GPU; pcie-path, acs and
	// nic-port are judged on the GPU's NICs and the bridges between it and
	// them. A report without it (an older agent) has only ready, which then
	// stands for every GPU.
	// +optional
	// +listType=map
	// +listMapKey=gpu
	// +kubebuilder:validation:MaxItems=64
	GPUs []GPUDirectGPU `json:"gpus,omitempty"`
}

// GPUDirectGPU is whether one GPU can use GPUDirect RDMA.
// +kubebuilder:validation:XValidation:rule="self.ready == (!has(self.blockingChecks) || size(self.blockingChecks) == 0)",message="ready must be true exactly when no check blocks the GPU"
type GPUDirectGPU struct {
	// GPU is the GPU's index in status.gpus.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=63
	GPU int32 `json:"gpu"`
	// Ready: every node-wide check and this GPU's own checks passed (or,
	// for ACS it cannot read, were let pass as the node's are). A GPU with
	// no NIC is never ready; pcie-path blocks it (the node's pcie-path
	// check looks only at GPUs that have a NIC, and may have passed).
	Ready bool `json:"ready"`
	// NICs are the names of the NICs the GPU would use (in status.nics), the
	// ones its checks looked at.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	NICs []string `json:"nics,omitempty"`
	// BlockingChecks name the checks (in checks) that keep this GPU from
	// being ready; empty when it is ready.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=64
	BlockingChecks []string `json:"blockingChecks,omitempty"`
}

// GPUDirectCheck is one GPUDirect RDMA check, such as "peermem", "acs" or "iommu".
type GPUDirectCheck struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Name   string      `json:"name"`
	Result CheckResult `json:"result"`
	// Reason is a CamelCase word, as in a Condition.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}
