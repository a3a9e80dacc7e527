package nodeagent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/podresources"
)

// SliceLister lists the ResourceSlices a DRA driver publishes for a node.
type SliceLister interface {
	ResourceSlices(ctx context.Context, node, driver string) ([]resourcev1.ResourceSlice, error)
}

// KubeSlices lists ResourceSlices (resource.k8s.io/v1) from the apiserver,
// selected by node and driver on the server.
type KubeSlices struct {
	Kube kubernetes.Interface
}

var _ SliceLister = KubeSlices{}

// ResourceSlices lists the slices of driver whose spec.nodeName is node.
func (k KubeSlices) ResourceSlices(ctx context.Context, node, driver string) ([]resourcev1.ResourceSlice, error) {
	sel := fields.AndSelectors(
		fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorNodeName, node),
		fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, driver),
	)
	list, err := k.Kube.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing ResourceSlices of driver %s on node %s: %w", driver, node, err)
	}
	return list.Items, nil
}

// draDevice is what a ResourceSlice says of one device.
type draDevice struct {
	uuid string
	typ  string
}

// draAllocations maps the DRA devices the kubelet prepared for each pod to
// GPU UUIDs through the node's ResourceSlices: a device is identified by
// driver, pool and name, and its slice's uuid attribute names the GPU
// (NVIDIA's driver publishes uuid, and types its devices gpu, mig or vfio).
// A device no slice publishes, one typed other than gpu (a MIG or VFIO
// device) and one without a uuid are dropped and returned as
// pod=driver/pool/device (why). Slices are listed once per driver, and only
// when the kubelet reported a device of it; an error listing them drops
// every DRA device.
func (d *Discoverer) draAllocations(ctx context.Context, node string, dra []podresources.DRAAllocation) ([]v1alpha1.GPUAllocation, []string, error) {
	if len(dra) == 0 {
		return nil, nil, nil
	}
	if d.Slices == nil {
		return nil, nil, fmt.Errorf("the kubelet reports DRA devices for %d pods and no ResourceSlice reader is configured", len(dra))
	}
	devices := map[podresources.DRADevice]draDevice{}
	listed := map[string]bool{}
	for _, a := range dra {
		for _, dev := range a.Devices {
			if listed[dev.Driver] {
				continue
			}
			listed[dev.Driver] = true
			found, err := d.Slices.ResourceSlices(ctx, node, dev.Driver)
			if err != nil {
				return nil, nil, err
			}
			for k, v := range sliceDevices(found, node, dev.Driver) {
				devices[k] = v
			}
		}
	}
	var out []v1alpha1.GPUAllocation
	var dropped []string
	for _, a := range dra {
		kept := v1alpha1.GPUAllocation{Pod: a.Pod}
		for _, dev := range a.Devices {
			sd, ok := devices[dev]
			switch {
			case !ok:
				dropped = append(dropped, fmt.Sprintf("%s=%s (in no ResourceSlice of node %s)", a.Pod, dev, node))
			case sd.typ != "" && sd.typ != "gpu":
				dropped = append(dropped, fmt.Sprintf("%s=%s (a %s device)", a.Pod, dev, sd.typ))
			case sd.uuid == "":
				dropped = append(dropped, fmt.Sprintf("%s=%s (its ResourceSlice gives no uuid)", a.Pod, dev))
			default:
				kept.GPUs = append(kept.GPUs, sd.uuid)
			}
		}
		if len(kept.GPUs) > 0 {
			slices.Sort(kept.GPUs)
			kept.GPUs = slices.Compact(kept.GPUs)
			out = append(out, kept)
		}
	}
	return out, dropped, nil
}

// sliceDevices indexes the devices of driver that slices publish for node.
// A pool being republished may briefly have slices of two generations; only
// the newest generation of each pool counts, as for the scheduler's
// allocator.
func sliceDevices(all []resourcev1.ResourceSlice, node, driver string) map[podresources.DRADevice]draDevice {
	newest := map[string]int64{}
	var mine []*resourcev1.ResourceSlice
	for i := range all {
		s := &all[i]
		if s.Spec.Driver != driver || s.Spec.NodeName == nil || *s.Spec.NodeName != node {
			continue
		}
		mine = append(mine, s)
		if g, ok := newest[s.Spec.Pool.Name]; !ok || s.Spec.Pool.Generation > g {
			newest[s.Spec.Pool.Name] = s.Spec.Pool.Generation
		}
	}
	out := map[podresources.DRADevice]draDevice{}
	for _, s := range mine {
		if s.Spec.Pool.Generation != newest[s.Spec.Pool.Name] {
			continue
		}
		for i := range s.Spec.Devices {
			dev := &s.Spec.Devices[i]
			out[podresources.DRADevice{Driver: driver, Pool: s.Spec.Pool.Name, Device: dev.Name}] = draDevice{
				uuid: stringAttribute(dev, driver, "uuid"),
				typ:  stringAttribute(dev, driver, "type"),
			}
		}
	}
	return out
}

// stringAttribute is a device's string attribute name, unqualified (in the
// driver's domain) or qualified with the driver's name.
func stringAttribute(dev *resourcev1.Device, driver, name string) string {
	for _, key := range []string{name, driver + "/" + name} {
		if a, ok := dev.Attributes[resourcev1.QualifiedName(key)]; ok && a.StringValue != nil {
			return *a.StringValue
		}
	}
	return ""
}

// mergeAllocations is the union, per pod, of two lists of allocations: a
// pod holding GPUs through the device plugin and through DRA gets one entry.
func mergeAllocations(a, b []v1alpha1.GPUAllocation) []v1alpha1.GPUAllocation {
	if len(b) == 0 {
		return a
	}
	byPod := map[string][]string{}
	for _, l := range [][]v1alpha1.GPUAllocation{a, b} {
		for _, x := range l {
			byPod[x.Pod] = append(byPod[x.Pod], x.GPUs...)
		}
	}
	out := make([]v1alpha1.GPUAllocation, 0, len(byPod))
	for pod, gpus := range byPod {
		slices.Sort(gpus)
		out = append(out, v1alpha1.GPUAllocation{Pod: pod, GPUs: slices.Compact(gpus)})
	}
	slices.SortFunc(out, func(x, y v1alpha1.GPUAllocation) int { return strings.Compare(x.Pod, y.Pod) })
	return out
}

// exclusiveAllocations keeps each GPU on one pod: the first by name of the
// pods that hold it. A DRA ResourceClaim may be shared by several pods, and
// time-sliced device-plugin replicas of one GPU may go to several pods, but
// a report naming one GPU for two pods is malformed for the scheduler. The
// other holders' entries are returned as pod=uuid (shared with pod), so the
// condition can name them; the GPU is counted used either way.
func exclusiveAllocations(allocs []v1alpha1.GPUAllocation) ([]v1alpha1.GPUAllocation, []string) {
	holder := map[string]string{}
	var out []v1alpha1.GPUAllocation
	var shared []string
	for _, a := range slices.SortedFunc(slices.Values(allocs), func(x, y v1alpha1.GPUAllocation) int { return cmp.Compare(x.Pod, y.Pod) }) {
		kept := v1alpha1.GPUAllocation{Pod: a.Pod}
		for _, id := range a.GPUs {
			if other, ok := holder[id]; ok {
				shared = append(shared, fmt.Sprintf("%s=%s (shared with %s)", a.Pod, id, other))
				continue
			}
			holder[id] = a.Pod
			kept.GPUs = append(kept.GPUs, id)
		}
		if len(kept.GPUs) > 0 {
			out = append(out, kept)
		}
	}
	return out, shared
}
