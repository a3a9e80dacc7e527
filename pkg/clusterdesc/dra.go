package clusterdesc

import (
	"fmt"
	"strings"

	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

// NVIDIADriver is the driver and GPU DeviceClass name of NVIDIA's DRA
// driver (k8s-dra-driver-gpu).
const NVIDIADriver = "gpu.nvidia.com"

// NVIDIADeviceClass is the DeviceClass for whole GPUs that NVIDIA's DRA
// driver installs: its driver's devices typed gpu (not mig or vfio).
func NVIDIADeviceClass() *resourcev1.DeviceClass {
	return &resourcev1.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: NVIDIADriver},
		Spec: resourcev1.DeviceClassSpec{Selectors: []resourcev1.DeviceSelector{{CEL: &resourcev1.CELDeviceSelector{
			Expression: fmt.Sprintf("device.driver == '%s' && device.attributes['%s'].type == 'gpu'", NVIDIADriver, NVIDIADriver),
		}}}},
	}
}

// NVIDIAResourceSlice is the ResourceSlice NVIDIA's DRA driver publishes
// for a node's GPUs, built from its NodeTopology: one pool named after the
// node, a device gpu-<minor> per GPU (the fixture's minor is the NVML
// index) with the driver's attributes — type gpu, uuid, productName,
// pcieBusID in NVML's form (00000000:1B:00.0) — and the standard
// resource.kubernetes.io/pcieRoot, one root per pair of GPUs as on HGX
// boards.
func NVIDIAResourceSlice(nt *topologyv1alpha1.NodeTopology) *resourcev1.ResourceSlice {
	node := nt.Name
	slice := &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-" + NVIDIADriver},
		Spec: resourcev1.ResourceSliceSpec{
			Driver:   NVIDIADriver,
			NodeName: &node,
			Pool:     resourcev1.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1},
		},
	}
	for _, g := range nt.Status.GPUs {
		str := func(s string) resourcev1.DeviceAttribute { return resourcev1.DeviceAttribute{StringValue: &s} }
		model := g.Model
		if model == "" {
			model = "NVIDIA H100 80GB HBM3"
		}
		slice.Spec.Devices = append(slice.Spec.Devices, resourcev1.Device{
			Name: fmt.Sprintf("gpu-%d", g.Index),
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type":                            str("gpu"),
				"uuid":                            str(g.UUID),
				"productName":                     str(model),
				"pcieBusID":                       str("0000" + strings.ToUpper(g.PCIBusID)),
				"resource.kubernetes.io/pcieRoot": str(fmt.Sprintf("pci0000:%02x", 0x10+g.Index/2*0x20)),
			},
		})
	}
	return slice
}
