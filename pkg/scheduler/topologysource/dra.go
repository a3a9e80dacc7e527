package topologysource

import (
	"context"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	resourcelisters "k8s.io/client-go/listers/resource/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// DRAConfig says which ResourceClaim requests ask for GPUs and which DRA
// driver publishes them.
type DRAConfig struct {
	// DeviceClasses are the DeviceClass names of GPU requests.
	DeviceClasses []string
	// Driver is the driver of the GPU devices in ResourceSlices.
	Driver string
	// RDMAClasses are the DeviceClass names of RDMA NIC requests.
	RDMAClasses []string
}

// DRA reads the GPUs a pod asks for through ResourceClaims, and keeps the
// placement model told which GPUs allocated claims hold. It reads claims
// and ResourceSlices from the scheduler's shared informers (the ones the
// DynamicResources plugin reads), so it lists nothing of its own.
type DRA struct {
	classes sets.Set[string]
	rdma    sets.Set[string]
	driver  string
	claims  resourcelisters.ResourceClaimLister
	cluster *topology.Cluster
	logger  klog.Logger

	mu sync.RWMutex
	// devices are the driver's devices by pool and name, and slices the
	// keys each ResourceSlice contributed.
	devices map[poolDevice]sliceDevice
	slices  map[string][]poolDevice
	// gpus counts the driver's GPU devices per node.
	gpus map[string]int
	// nodeSlices are the slices publishing GPUs on each node.
	nodeSlices map[string]sets.Set[string]
	// pending are allocated claims whose devices no known slice names yet.
	pending map[string]*resourcev1.ResourceClaim
}

type poolDevice struct{ pool, device string }

type sliceDevice struct {
	node string
	id   topology.DeviceID
	gpu  bool
}

// DRAInformers is what NewDRA needs of the scheduler's informers.
type DRAInformers interface {
	ResourceClaims() cache.SharedIndexInformer
	ResourceClaimLister() resourcelisters.ResourceClaimLister
	ResourceSlices() cache.SharedIndexInformer
}

// NewDRA watches claims and slices through informers and reports allocated
// claims' GPUs to cluster.
func NewDRA(logger klog.Logger, cfg DRAConfig, inf DRAInformers, cluster *topology.Cluster) (*DRA, error) {
	d := &DRA{
		classes:    sets.New(cfg.DeviceClasses...),
		rdma:       sets.New(cfg.RDMAClasses...),
		driver:     cfg.Driver,
		claims:     inf.ResourceClaimLister(),
		cluster:    cluster,
		logger:     logger,
		devices:    map[poolDevice]sliceDevice{},
		slices:     map[string][]poolDevice{},
		gpus:       map[string]int{},
		nodeSlices: map[string]sets.Set[string]{},
		pending:    map[string]*resourcev1.ResourceClaim{},
	}
	if _, err := inf.ResourceSlices().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { d.setSlice(obj, false) },
		UpdateFunc: func(_, obj interface{}) { d.setSlice(obj, false) },
		DeleteFunc: func(obj interface{}) { d.setSlice(obj, true) },
	}); err != nil {
		return nil, fmt.Errorf("watching ResourceSlices: %w", err)
	}
	if _, err := inf.ResourceClaims().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { d.setClaim(obj, false) },
		UpdateFunc: func(_, obj interface{}) { d.setClaim(obj, false) },
		DeleteFunc: func(obj interface{}) { d.setClaim(obj, true) },
	}); err != nil {
		return nil, fmt.Errorf("watching ResourceClaims: %w", err)
	}
	return d, nil
}

func untomb(obj interface{}) interface{} {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tomb.Obj
	}
	return obj
}

// Attribute names under which drivers publish a device's identity: NVIDIA's
// driver uses uuid and pcieBusID; resource.kubernetes.io/pciBusID is the
// standard attribute.
var (
	uuidAttributes = []string{"uuid"}
	pciAttributes  = []string{"pcieBusID", "pciBusID", "resource.kubernetes.io/pciBusID"}
)

func (d *DRA) attribute(dev *resourcev1.Device, names []string) string {
	for _, name := range names {
		for _, key := range []string{name, d.driver + "/" + name} {
			if a, ok := dev.Attributes[resourcev1.QualifiedName(key)]; ok && a.StringValue != nil {
				return *a.StringValue
			}
		}
	}
	return ""
}

func (d *DRA) setSlice(obj interface{}, deleted bool) {
	slice, ok := untomb(obj).(*resourcev1.ResourceSlice)
	if !ok || slice.Spec.Driver != d.driver {
		return
	}
	d.mu.Lock()
	// The nodes whose GPUs the slice published before and after: their
	// allocation order is told to the model again.
	touched := map[string]bool{}
	for _, k := range d.slices[slice.Name] {
		if sd, ok := d.devices[k]; ok {
			if sd.gpu {
				d.gpus[sd.node]--
				if d.gpus[sd.node] <= 0 {
					delete(d.gpus, sd.node)
				}
				if names := d.nodeSlices[sd.node]; names.Delete(slice.Name).Len() == 0 {
					delete(d.nodeSlices, sd.node)
				}
				touched[sd.node] = true
			}
			delete(d.devices, k)
		}
	}
	delete(d.slices, slice.Name)
	node := ""
	if slice.Spec.NodeName != nil {
		node = *slice.Spec.NodeName
	}
	if !deleted && node != "" {
		keys := make([]poolDevice, 0, len(slice.Spec.Devices))
		for i := range slice.Spec.Devices {
			dev := &slice.Spec.Devices[i]
			k := poolDevice{pool: slice.Spec.Pool.Name, device: dev.Name}
			typ := d.attribute(dev, []string{"type"})
			// NVIDIA's driver types its devices gpu, mig or vfio; a
			// driver that types nothing publishes whole GPUs.
			sd := sliceDevice{node: node, gpu: typ == "" || typ == "gpu",
				id: topology.DeviceID{UUID: d.attribute(dev, uuidAttributes), PCIBusID: d.attribute(dev, pciAttributes)}}
			if sd.gpu {
				d.gpus[node]++
				if d.nodeSlices[node] == nil {
					d.nodeSlices[node] = sets.New[string]()
				}
				d.nodeSlices[node].Insert(slice.Name)
				touched[node] = true
			}
			d.devices[k] = sd
			keys = append(keys, k)
		}
		d.slices[slice.Name] = keys
	}
	orders := make(map[string][]topology.DeviceID, len(touched))
	for n := range touched {
		orders[n] = d.allocationOrderLocked(n)
	}
	pending := make([]*resourcev1.ResourceClaim, 0, len(d.pending))
	for _, c := range d.pending {
		pending = append(pending, c)
	}
	d.mu.Unlock()
	for n, order := range orders {
		d.cluster.SetAllocationOrder(n, order)
	}
	for _, c := range pending {
		d.setClaim(c, false)
	}
}

func (d *DRA) setClaim(obj interface{}, deleted bool) {
	claim, ok := untomb(obj).(*resourcev1.ResourceClaim)
	if !ok {
		return
	}
	key := claim.Namespace + "/" + claim.Name
	if deleted || claim.Status.Allocation == nil {
		d.mu.Lock()
		delete(d.pending, key)
		d.mu.Unlock()
		d.cluster.SetClaim(key, "", nil, nil)
		return
	}
	node, ids, err := d.resolve(claim)
	d.mu.Lock()
	if err != nil {
		d.pending[key] = claim
	} else {
		delete(d.pending, key)
	}
	d.mu.Unlock()
	if err != nil {
		d.logger.V(4).Info("Allocated ResourceClaim names devices no ResourceSlice publishes yet", "claim", key, "err", err)
		return
	}
	var uids []string
	for _, r := range claim.Status.ReservedFor {
		if r.Resource == "pods" {
			uids = append(uids, string(r.UID))
		}
	}
	d.cluster.SetClaim(key, node, ids, uids)
}

// resolve maps an allocated claim's results of the driver to their node
// and GPUs, through the ResourceSlices that publish them.
func (d *DRA) resolve(claim *resourcev1.ResourceClaim) (string, []topology.DeviceID, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	node := ""
	var ids []topology.DeviceID
	for i, r := range claim.Status.Allocation.Devices.Results {
		if r.Driver != d.driver {
			continue
		}
		sd, ok := d.devices[poolDevice{pool: r.Pool, device: r.Device}]
		if !ok {
			return "", nil, fmt.Errorf("ResourceClaim %s/%s: status.allocation.devices.results[%d]: device %s/%s of driver %s is in no ResourceSlice",
				claim.Namespace, claim.Name, i, r.Pool, r.Device, r.Driver)
		}
		if !sd.gpu {
			continue
		}
		if node != "" && sd.node != node {
			return "", nil, fmt.Errorf("ResourceClaim %s/%s: status.allocation.devices.results[%d]: device %s/%s is on node %s, the claim's other GPUs on %s",
				claim.Namespace, claim.Name, i, r.Pool, r.Device, sd.node, node)
		}
		node = sd.node
		ids = append(ids, sd.id)
	}
	return node, ids, nil
}

// allocationOrderLocked is the order in which the DRA allocator tries
// node's GPU devices: the one ResourceSlice publishing them, device by
// device. nil when more than one slice publishes GPUs there, as the
// allocator's order across slices is not the informer's.
func (d *DRA) allocationOrderLocked(node string) []topology.DeviceID {
	names := d.nodeSlices[node]
	if names.Len() != 1 {
		return nil
	}
	var order []topology.DeviceID
	for _, k := range d.slices[names.UnsortedList()[0]] {
		if sd := d.devices[k]; sd.gpu {
			order = append(order, sd.id)
		}
	}
	return order
}

// NodeGPUs is the number of GPU devices the driver publishes on node.
func (d *DRA) NodeGPUs(node string) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.gpus[node]
}

// MaxNodeGPUs is the most GPU devices the driver publishes on any node:
// what a claim for all of a node's GPUs asks for where the node is not yet
// known.
func (d *DRA) MaxNodeGPUs() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	most := 0
	for _, n := range d.gpus {
		most = max(most, n)
	}
	return most
}

// DRARequest is what a pod's ResourceClaims ask for in GPUs, counting only
// claims not yet allocated (an allocated claim's GPUs are held already).
type DRARequest struct {
	// Count is the GPUs asked for by count.
	Count int
	// AllOfNode: a request asks for every GPU of the node it lands on.
	AllOfNode bool
	// Claims are the GPU claims (namespace/name) counted.
	Claims []string
	// Allocated are the pod's GPU claims already allocated.
	Allocated []string
	// RDMA: a claim of the pod, allocated or not, asks for a device of an
	// RDMA NIC class (DRAConfig.RDMAClasses).
	RDMA bool
	// FirstFit: every counted claim asks for GPUs by class alone (exactly,
	// no selectors, no constraints), so the allocator takes the first free
	// GPUs in its slice's order and the fit can be predicted.
	FirstFit bool
}

// GPUs is the request's GPU count on a node with nodeGPUs GPU devices.
func (r DRARequest) GPUs(nodeGPUs int) int {
	if r.AllOfNode {
		return r.Count + nodeGPUs
	}
	return r.Count
}

// Request reads the GPUs the pod asks for through its ResourceClaims. A
// claim that cannot be read is an error naming the claim and the field.
func (d *DRA) Request(pod *v1.Pod) (DRARequest, error) {
	req := DRARequest{FirstFit: true}
	for i, pc := range pod.Spec.ResourceClaims {
		name, err := claimName(pod, i)
		if err != nil {
			return req, err
		}
		if name == "" {
			// The claim controller decided the pod needs no claim here.
			continue
		}
		claim, err := d.claims.ResourceClaims(pod.Namespace).Get(name)
		switch {
		case apierrors.IsNotFound(err):
			return req, fmt.Errorf("pod %s/%s: spec.resourceClaims[%d] (%s): ResourceClaim %s/%s not found", pod.Namespace, pod.Name, i, pc.Name, pod.Namespace, name)
		case err != nil:
			return req, fmt.Errorf("pod %s/%s: spec.resourceClaims[%d] (%s): reading ResourceClaim %s/%s: %w", pod.Namespace, pod.Name, i, pc.Name, pod.Namespace, name, err)
		}
		count, all, gpu, err := d.claimGPUs(claim)
		if err != nil {
			return req, err
		}
		req.RDMA = req.RDMA || d.claimsRDMA(claim)
		if !gpu {
			continue
		}
		key := claim.Namespace + "/" + claim.Name
		if claim.Status.Allocation != nil {
			req.Allocated = append(req.Allocated, key)
			continue
		}
		req.Claims = append(req.Claims, key)
		req.FirstFit = req.FirstFit && byClassAlone(claim)
		req.Count += count
		req.AllOfNode = req.AllOfNode || all
		if req.Count > MaxPodGPUs {
			return req, fmt.Errorf("pod %s/%s: its ResourceClaims ask for %d GPUs, more than %d", pod.Namespace, pod.Name, req.Count, MaxPodGPUs)
		}
	}
	return req, nil
}

// claimName is the ResourceClaim a pod's spec.resourceClaims[i] names: its
// resourceClaimName, or the claim made from its template, which the pod's
// status names. "" when the status says no claim is needed.
func claimName(pod *v1.Pod, i int) (string, error) {
	pc := pod.Spec.ResourceClaims[i]
	switch {
	case pc.ResourceClaimName != nil:
		return *pc.ResourceClaimName, nil
	case pc.ResourceClaimTemplateName != nil:
		for _, st := range pod.Status.ResourceClaimStatuses {
			if st.Name != pc.Name {
				continue
			}
			if st.ResourceClaimName == nil {
				return "", nil
			}
			return *st.ResourceClaimName, nil
		}
		return "", fmt.Errorf("pod %s/%s: spec.resourceClaims[%d] (%s): the ResourceClaim from template %s is not created yet (no status.resourceClaimStatuses entry)",
			pod.Namespace, pod.Name, i, pc.Name, *pc.ResourceClaimTemplateName)
	}
	return "", fmt.Errorf("pod %s/%s: spec.resourceClaims[%d] (%s): neither resourceClaimName nor resourceClaimTemplateName is set", pod.Namespace, pod.Name, i, pc.Name)
}

// claimGPUs reads a claim's GPU requests: the count asked for exactly,
// whether a request asks for all of a node's GPUs, and whether any request
// is for GPUs at all. A request with alternatives (firstAvailable) counts
// the fewest GPUs any of them asks for, which is what the allocator may
// settle for.
func (d *DRA) claimGPUs(claim *resourcev1.ResourceClaim) (count int, all, gpu bool, err error) {
	for j, r := range claim.Spec.Devices.Requests {
		path := fmt.Sprintf("spec.devices.requests[%d]", j)
		switch {
		case r.Exactly != nil:
			if !d.classes.Has(r.Exactly.DeviceClassName) {
				continue
			}
			gpu = true
			n, a, err := modeCount(claim, path+".exactly", r.Exactly.AllocationMode, r.Exactly.Count)
			if err != nil {
				return 0, false, false, err
			}
			count += n
			all = all || a
		case len(r.FirstAvailable) > 0:
			fewest := -1
			for k, sub := range r.FirstAvailable {
				n := 0
				if d.classes.Has(sub.DeviceClassName) {
					gpu = true
					c, a, err := modeCount(claim, fmt.Sprintf("%s.firstAvailable[%d]", path, k), sub.AllocationMode, sub.Count)
					if err != nil {
						return 0, false, false, err
					}
					n = c
					if a {
						n = 1
					}
				}
				if fewest < 0 || n < fewest {
					fewest = n
				}
			}
			count += max(fewest, 0)
		default:
			return 0, false, false, fmt.Errorf("ResourceClaim %s/%s: %s: neither exactly nor firstAvailable is set", claim.Namespace, claim.Name, path)
		}
		if count > MaxPodGPUs {
			return 0, false, false, fmt.Errorf("ResourceClaim %s/%s: %s: asks for %d GPUs, more than %d", claim.Namespace, claim.Name, path, count, MaxPodGPUs)
		}
	}
	return count, all, gpu, nil
}

// byClassAlone: the claim's requests ask for devices by class and count
// only, with no alternatives, selectors or constraints for the allocator to
// search through.
func byClassAlone(claim *resourcev1.ResourceClaim) bool {
	if len(claim.Spec.Devices.Constraints) > 0 {
		return false
	}
	for _, r := range claim.Spec.Devices.Requests {
		if r.Exactly == nil || len(r.Exactly.Selectors) > 0 || r.Exactly.AdminAccess != nil && *r.Exactly.AdminAccess {
			return false
		}
	}
	return true
}

// claimsRDMA: a request of the claim, or one of its alternatives, asks for
// a device of an RDMA NIC class.
func (d *DRA) claimsRDMA(claim *resourcev1.ResourceClaim) bool {
	if d.rdma.Len() == 0 {
		return false
	}
	for _, r := range claim.Spec.Devices.Requests {
		if r.Exactly != nil && d.rdma.Has(r.Exactly.DeviceClassName) {
			return true
		}
		for _, sub := range r.FirstAvailable {
			if d.rdma.Has(sub.DeviceClassName) {
				return true
			}
		}
	}
	return false
}

func modeCount(claim *resourcev1.ResourceClaim, path string, mode resourcev1.DeviceAllocationMode, count int64) (int, bool, error) {
	switch mode {
	case resourcev1.DeviceAllocationModeAll:
		return 0, true, nil
	case "", resourcev1.DeviceAllocationModeExactCount:
		if count == 0 {
			count = 1
		}
		if count < 0 || count > MaxPodGPUs {
			return 0, false, fmt.Errorf("ResourceClaim %s/%s: %s.count: %d is not in 1..%d", claim.Namespace, claim.Name, path, count, MaxPodGPUs)
		}
		return int(count), false, nil
	}
	return 0, false, fmt.Errorf("ResourceClaim %s/%s: %s.allocationMode: %q is not ExactCount or All", claim.Namespace, claim.Name, path, mode)
}

// factoryInformers are the DRA informers of the scheduler's shared
// informer factory.
type factoryInformers struct {
	f informers.SharedInformerFactory
}

func (i factoryInformers) ResourceClaims() cache.SharedIndexInformer {
	return i.f.Resource().V1().ResourceClaims().Informer()
}

func (i factoryInformers) ResourceClaimLister() resourcelisters.ResourceClaimLister {
	return i.f.Resource().V1().ResourceClaims().Lister()
}

func (i factoryInformers) ResourceSlices() cache.SharedIndexInformer {
	return i.f.Resource().V1().ResourceSlices().Informer()
}

// DRA returns the process's DRA reader, made on the first call over the
// scheduler's shared informers and the placement model. Later calls get
// the first one, whatever their cfg.
func (s *Source) DRA(ctx context.Context, h Handle, cfg DRAConfig) (*DRA, error) {
	cluster, err := s.Model(ctx, h)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dra == nil {
		d, err := NewDRA(klog.FromContext(ctx).WithValues("component", "dra"), cfg, factoryInformers{h.SharedInformerFactory()}, cluster)
		if err != nil {
			return nil, err
		}
		s.dra = d
	}
	return s.dra, nil
}

// GPUCount is the number of GPUs the pod asks for, under the extended
// resource name and, once NVLinkTopo has made the DRA reader, through its
// ResourceClaims not yet allocated (a claim for all of a node's GPUs counts
// the most any node has).
func (s *Source) GPUCount(pod *v1.Pod, name v1.ResourceName) (int, error) {
	n, err := GPUCount(pod, name)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	d := s.dra
	s.mu.Unlock()
	if d == nil || len(pod.Spec.ResourceClaims) == 0 {
		return n, nil
	}
	r, err := d.Request(pod)
	if err != nil {
		return 0, err
	}
	return min(n+r.GPUs(d.MaxNodeGPUs()), MaxPodGPUs), nil
}
