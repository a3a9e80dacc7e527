// Package nodeagent is tandem's node agent: it discovers a GPU node's GPUs,
// NVLink islands, RDMA NICs, PCIe paths, fabric position, GPUDirect RDMA
// readiness and GPU allocations, and publishes them as the node's
// NodeTopology and a few node labels. The sources live in subpackages, each
// behind a small interface with a fake.
package nodeagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/klog/v2"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpudirect"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
	"github.com/tandem-sched/tandem/pkg/nodeagent/podresources"
	"github.com/tandem-sched/tandem/pkg/nodeagent/rdma"
)

// Discoverer gathers everything the agent publishes.
type Discoverer struct {
	SysRoot string
	// Topology, when set, is an NCCL topology file whose tree gives the
	// levels between the devices it lists (Azure ND, where the guest sees no
	// PCIe switch); sysfs still gives every device's bridges for the ACS
	// check.
	Topology *pci.TopologyFile
	NVML     gpu.Library
	// LeafSources are tried in order; may be empty.
	LeafSources []leaf.Source
	Checker     gpudirect.Checker
	// Configurator, when set, is run when the checks fail, and the checks
	// are run again after it (--configure-gpudirect).
	Configurator *gpudirect.Configurator
	// PodResources may be nil (no allocations reported).
	PodResources podresources.Lister
	// Slices maps the DRA devices the kubelet reports to GPU UUIDs; it is
	// listed only when the kubelet reports a DRA device.
	Slices SliceLister
}

// NIC is a discovered NIC port with its place in the fabric.
type NIC struct {
	rdma.Port
	Leaf leaf.Result
	Rail int
}

// Discovery is one pass over the node. Each *Err field says what a source
// could not read; everything else it found is still here.
type Discovery struct {
	NodeName string

	GPUs   gpu.Inventory
	GPUErr error

	NICs   []NIC
	NICErr error

	// PCI holds the tree position of every GPU and NIC that could be placed.
	PCI    map[string]pci.Device
	PCIErr error
	// Paths is the GPU x NIC level matrix, sorted by GPU then NIC.
	Paths []v1alpha1.PCIePath
	// BestNIC maps a GPU index to the NIC it sends through first (its rail).
	BestNIC map[int]string
	// GPUNICs maps a GPU index to every NIC at its nearest level, sorted:
	// the NICs NCCL and NIXL spread its traffic over (4 EFA devices per GPU
	// on p5), each of which the GPUDirect checks look at.
	GPUNICs map[int][]string

	Fabric       leaf.Fabric
	LeafErr      error
	NVLinkDomain string

	GPUDirect gpudirect.Result
	// GPUDirectChanges are what --configure-gpudirect changed this pass.
	GPUDirectChanges []gpudirect.Change
	ConfigureErr     error

	Allocations []v1alpha1.GPUAllocation
	AllocErr    error
	// SliceErr is why the node's ResourceSlices could not be listed; the
	// pods' DRA devices are then left out of Allocations.
	SliceErr error
	// ForeignDevices are the kubelet's allocated device ids that name no
	// GPU of this pass (a MIG device, a GPU fallen off the bus), and the
	// DRA devices that name no GPU (see draAllocations), each as pod=id,
	// dropped from Allocations and named in GPUAllocationsKnown.
	ForeignDevices []string
	// SharedDevices are GPUs listed for a pod that an earlier pod (by
	// name) holds too, as pod=uuid (shared with pod): each GPU is
	// published for one pod only.
	SharedDevices []string
}

// Discover runs every source. It never fails as a whole: each source's
// error is kept in the Discovery next to what the others found.
func (d *Discoverer) Discover(ctx context.Context, node leaf.Node) *Discovery {
	logger := klog.FromContext(ctx)
	out := &Discovery{NodeName: node.Name, PCI: map[string]pci.Device{}, BestNIC: map[int]string{}, GPUNICs: map[int][]string{}}

	if d.NVML != nil {
		out.GPUs, out.GPUErr = gpu.Discover(ctx, d.NVML)
	} else {
		out.GPUErr = errors.New("no NVML library configured")
	}
	ports, err := rdma.Discover(d.SysRoot)
	out.NICErr = err
	for _, p := range ports {
		out.NICs = append(out.NICs, NIC{Port: p})
	}

	d.placeDevices(out)
	d.computePaths(out)
	d.resolveLeaves(ctx, node, out)
	out.NVLinkDomain = nvlinkDomain(node.Name, out.GPUs)

	in := d.gpuDirectInput(out)
	out.GPUDirect = d.Checker.Check(ctx, in)
	if d.Configurator != nil && !out.GPUDirect.Ready {
		out.GPUDirectChanges, out.ConfigureErr = d.Configurator.Configure(ctx, in, out.GPUDirect)
		if out.ConfigureErr != nil {
			logger.Error(out.ConfigureErr, "Configuring GPUDirect RDMA")
		}
		if len(out.GPUDirectChanges) > 0 {
			out.GPUDirect = d.Checker.Check(ctx, in)
		}
	}

	if d.PodResources != nil {
		d.discoverAllocations(ctx, node.Name, out)
	}
	for _, e := range []error{out.GPUErr, out.NICErr, out.PCIErr, out.LeafErr, out.AllocErr, out.SliceErr} {
		if e != nil {
			logger.V(1).Info("Discovery problem", "err", e)
		}
	}
	return out
}

// discoverAllocations asks the kubelet which pods hold which GPUs, through
// the device plugin and through DRA, and keeps the GPUs this pass found,
// each on one pod.
func (d *Discoverer) discoverAllocations(ctx context.Context, node string, out *Discovery) {
	var reported podresources.Allocations
	reported, out.AllocErr = d.PodResources.Allocations(ctx)
	dra, dropped, err := d.draAllocations(ctx, node, reported.DRA)
	out.SliceErr = err
	allocs, foreign := knownAllocations(mergeAllocations(reported.GPUs, dra), out.GPUs.GPUs)
	out.Allocations, out.SharedDevices = exclusiveAllocations(allocs)
	out.ForeignDevices = append(dropped, foreign...)
	slices.Sort(out.ForeignDevices)
}

// placeDevices resolves every GPU and NIC in the PCI tree, filling in a GPU's
// NUMA node from sysfs when NVML did not give one.
func (d *Discoverer) placeDevices(out *Discovery) {
	sys := pci.SysFS{Root: d.SysRoot}
	var errs []error
	place := func(bdf string) (pci.Device, bool) {
		if dev, ok := out.PCI[bdf]; ok {
			return dev, true
		}
		dev, err := sys.Device(bdf)
		if err != nil {
			errs = append(errs, err)
			if dev.BDF == "" {
				return pci.Device{}, false
			}
		}
		out.PCI[bdf] = dev
		return dev, true
	}
	for i := range out.GPUs.GPUs {
		g := &out.GPUs.GPUs[i]
		if dev, ok := place(g.PCIBusID); ok && g.NUMANode < 0 {
			g.NUMANode = dev.NUMANode
		}
	}
	for _, n := range out.NICs {
		place(n.PCIBusID)
		if n.DataDirectBDF != "" {
			place(n.DataDirectBDF)
		}
	}
	out.PCIErr = errors.Join(errs...)
}

// dmaBDF is the PCI function through which NIC n's DMA reaches GPU memory,
// and so the one its PCIe paths are measured from: its Data Direct function
// when it has one that sysfs places, else its main function. This is the
// path NCCL uses by default (NCCL_IB_DATA_DIRECT=1 exposes only the Data
// Direct side of such a NIC, with the Data Direct function's sysfs path; see
// pkg/nodeagent/rdma/datadirect.go).
func dmaBDF(out *Discovery, n NIC) string {
	if n.DataDirectBDF != "" {
		if _, ok := out.PCI[n.DataDirectBDF]; ok {
			return n.DataDirectBDF
		}
	}
	return n.PCIBusID
}

// levelDevice is the device Level is computed on: the NCCL topology file's
// placement when it lists the device, else sysfs's.
func (d *Discoverer) levelDevice(out *Discovery, bdf string) (pci.Device, bool) {
	if dev, ok := d.Topology.Device(bdf); ok {
		return dev, true
	}
	dev, ok := out.PCI[bdf]
	return dev, ok
}

// computePaths fills the level matrix, each GPU's NICs at its nearest level,
// its best NIC (among those, the one serving fewest GPUs so far, then by
// name) and rails.
func (d *Discoverer) computePaths(out *Discovery) {
	load := map[string]int{}
	for _, g := range out.GPUs.GPUs {
		gdev, ok := d.levelDevice(out, g.PCIBusID)
		if !ok {
			continue
		}
		best, bestRank := "", 99
		var near []string
		for _, n := range out.NICs {
			ndev, ok := d.levelDevice(out, dmaBDF(out, n))
			if !ok {
				continue
			}
			level := pci.Level(gdev, ndev)
			out.Paths = append(out.Paths, v1alpha1.PCIePath{GPU: int32(g.Index), NIC: n.Name, Level: level})
			rank := pci.LevelRank(level)
			switch {
			case rank < bestRank:
				near = []string{n.Name}
			case rank == bestRank:
				near = append(near, n.Name)
			}
			if rank < bestRank || (rank == bestRank && (load[n.Name] < load[best] || (load[n.Name] == load[best] && n.Name < best))) {
				best, bestRank = n.Name, rank
			}
		}
		if best != "" {
			out.BestNIC[g.Index] = best
			load[best]++
			slices.Sort(near)
			out.GPUNICs[g.Index] = near
		}
	}
	slices.SortFunc(out.Paths, func(a, b v1alpha1.PCIePath) int {
		return cmp.Or(cmp.Compare(a.GPU, b.GPU), strings.Compare(a.NIC, b.NIC))
	})
	// Rail r is the r-th NIC to serve a GPU, in GPU order, so that on
	// identical nodes the NIC next to GPU i is on the same rail everywhere;
	// NICs serving no GPU come after, in name order.
	rail := map[string]int{}
	for _, g := range out.GPUs.GPUs {
		if n, ok := out.BestNIC[g.Index]; ok {
			if _, seen := rail[n]; !seen {
				rail[n] = len(rail)
			}
		}
	}
	for i := range out.NICs {
		if _, ok := rail[out.NICs[i].Name]; !ok {
			rail[out.NICs[i].Name] = len(rail)
		}
		out.NICs[i].Rail = rail[out.NICs[i].Name]
	}
}

func (d *Discoverer) resolveLeaves(ctx context.Context, node leaf.Node, out *Discovery) {
	nics := make([]leaf.NIC, 0, len(out.NICs))
	for _, n := range out.NICs {
		nics = append(nics, leaf.NIC{Name: n.Name, Device: n.Device, Port: n.Port.Port, NetDev: n.NetDev, NodeGUID: n.NodeGUID, LinkLayer: n.LinkLayer})
	}
	out.Fabric, out.LeafErr = leaf.Resolve(ctx, d.LeafSources, node, nics)
	for i := range out.NICs {
		out.NICs[i].Leaf = out.Fabric.PerNIC[out.NICs[i].Name]
	}
}

// nvlinkDomain is the multi-node NVLink clique ("<cluster UUID>.<clique>",
// the form GPU Feature Discovery uses) when the fabric vouches for one, the
// node's own name when NVLink stops at the board, and "" without NVLink.
func nvlinkDomain(nodeName string, inv gpu.Inventory) string {
	if d, ok := FabricDomain(inv); ok {
		return d
	}
	for _, g := range inv.GPUs {
		if len(g.Peers) > 0 {
			return nodeName
		}
	}
	return ""
}

// FabricDomain returns the node's multi-node NVLink clique when every GPU
// agrees on it: each has finished registering with the fabric (state
// Completed), the fabric manager reports it healthy (status Success), it has
// a cluster UUID, and it reaches the fabric through an active NVSwitch link.
// Anything less (a fabric still training, a failed registration, GPUs joined
// only by bridges, GPUs that disagree) leaves the domain at the node, since
// two nodes that wrongly share a domain would be paired as if NVLink joined
// them. A single HGX board's fabric manager may report Completed with an
// all-zero cluster UUID (read as none): such boards never share a domain.
func FabricDomain(inv gpu.Inventory) (string, bool) {
	domain := ""
	for _, g := range inv.GPUs {
		f := g.Fabric
		if f == nil || f.State != gpu.FabricCompleted || f.Status != "Success" || f.ClusterUUID == "" || !switchAttached(g) {
			return "", false
		}
		d := fmt.Sprintf("%s.%d", f.ClusterUUID, f.CliqueID)
		if domain != "" && d != domain {
			return "", false
		}
		domain = d
	}
	return domain, domain != ""
}

func switchAttached(g gpu.GPU) bool {
	for _, l := range g.NVLinks {
		if l.Active && l.RemoteType == gpu.RemoteNVSwitch {
			return true
		}
	}
	return false
}

func (d *Discoverer) gpuDirectInput(out *Discovery) gpudirect.Input {
	in := gpudirect.Input{GPUCount: len(out.GPUs.GPUs), NICCount: len(out.NICs)}
	nics := map[string]NIC{}
	for _, n := range out.NICs {
		nics[n.Name] = n
	}
	for _, g := range out.GPUs.GPUs {
		in.GPUs = append(in.GPUs, g.Index)
		glevel, _ := d.levelDevice(out, g.PCIBusID)
		for _, name := range out.GPUNICs[g.Index] {
			n := nics[name]
			dma := dmaBDF(out, n)
			nlevel, _ := d.levelDevice(out, dma)
			gpuPort, dmaPort := pci.TurnPorts(out.PCI[g.PCIBusID], out.PCI[dma])
			in.Pairs = append(in.Pairs, gpudirect.Pair{
				GPU: g.Index, GPUBDF: g.PCIBusID, NIC: name, NICBDF: n.PCIBusID, NICState: n.State,
				DMABDF: dma, DataDirect: dma != n.PCIBusID,
				Level: pci.Level(glevel, nlevel), Bridges: pci.PathBridges(out.PCI[g.PCIBusID], out.PCI[dma]),
				GPUPort: gpuPort, DMAPort: dmaPort,
			})
		}
	}
	return in
}

// knownAllocations keeps of each allocation the GPUs this pass found. The
// kubelet may list ids that are not whole GPUs of the node: MIG devices
// (their parent GPU is in MIG mode, which placement leaves alone already), or
// a GPU that fell off the bus while its pod still runs. Publishing those ids
// would make the whole report malformed for the scheduler; they are dropped
// and returned as pod=id, so the condition can name them.
func knownAllocations(allocs []v1alpha1.GPUAllocation, gpus []gpu.GPU) ([]v1alpha1.GPUAllocation, []string) {
	known := make(map[string]bool, len(gpus))
	for _, g := range gpus {
		known[g.UUID] = true
	}
	var out []v1alpha1.GPUAllocation
	var foreign []string
	for _, a := range allocs {
		kept := v1alpha1.GPUAllocation{Pod: a.Pod}
		for _, id := range a.GPUs {
			if known[id] {
				kept.GPUs = append(kept.GPUs, id)
			} else {
				foreign = append(foreign, a.Pod+"="+id)
			}
		}
		if len(kept.GPUs) > 0 {
			out = append(out, kept)
		}
	}
	return out, foreign
}
