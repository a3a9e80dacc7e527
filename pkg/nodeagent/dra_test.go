package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/podresources"
)

// kubeletReport is a Lister returning a fixed kubelet report.
type kubeletReport podresources.Allocations

func (k kubeletReport) Allocations(context.Context) (podresources.Allocations, error) {
	return podresources.Allocations(k), nil
}

const nvidiaDriver = "gpu.nvidia.com"

func draDev(dev string) podresources.DRADevice {
	return podresources.DRADevice{Driver: nvidiaDriver, Pool: "gpu-node", Device: dev}
}

// nvidiaSlice is a ResourceSlice as NVIDIA's DRA driver publishes one: a
// pool named after the node, devices gpu-<minor> typed gpu with the GPU's
// uuid, MIG devices typed mig with their own MIG uuid.
func nvidiaSlice(name, node string, generation int64, devices ...resourcev1.Device) *resourcev1.ResourceSlice {
	return &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourcev1.ResourceSliceSpec{
			Driver: nvidiaDriver, NodeName: ptr.To(node),
			Pool:    resourcev1.ResourcePool{Name: node, Generation: generation, ResourceSliceCount: 1},
			Devices: devices,
		},
	}
}

func sliceDevice(name, typ, uuid string) resourcev1.Device {
	dev := resourcev1.Device{Name: name, Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
		"type": {StringValue: ptr.To(typ)},
	}}
	if uuid != "" {
		dev.Attributes["uuid"] = resourcev1.DeviceAttribute{StringValue: ptr.To(uuid)}
	}
	return dev
}

func sliceLists(kube *fake.Clientset) []string {
	var out []string
	for _, a := range kube.Actions() {
		if l, ok := a.(k8stesting.ListAction); ok && a.GetResource().Resource == "resourceslices" {
			out = append(out, a.GetResource().GroupVersion().String()+" "+l.GetListRestrictions().Fields.String())
		}
	}
	return out
}

// The kubelet's DRA devices are published as the GPUs their ResourceSlice's
// uuid names, merged per pod with the device plugin's; MIG devices, devices
// no slice publishes and devices without a uuid are dropped and named; a
// GPU two pods share through one claim is published for one of them; the
// scheduler accepts the report and sees each GPU used once.
func TestDRAAllocationsPublished(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	d := discoverer(m, leaf.Labels{})
	node := hgxNode(m)
	gpus := d.Discover(context.Background(), node).Status(nil, time.Unix(1000, 0)).GPUs
	g := func(i int) string { return gpus[i].UUID }

	var devices []resourcev1.Device
	for i := range 7 {
		devices = append(devices, sliceDevice(fmt.Sprintf("gpu-%d", i), "gpu", g(i)))
	}
	devices = append(devices,
		sliceDevice("gpu-7", "gpu", ""),
		sliceDevice("gpu-6-mig-9-4-4", "mig", "MIG-6f2c1a44-0000-5000-8000-000000000001"))
	// The node's pool is named gpu-node in this test; the slices of an older
	// generation of the pool, of another node and of another driver (whose
	// device names collide with NVIDIA's) must not be read.
	mine := nvidiaSlice("gpu-node-gpu.nvidia.com-x7k2p", node.Name, 2, devices...)
	mine.Spec.Pool.Name = "gpu-node"
	stale := nvidiaSlice("gpu-node-gpu.nvidia.com-old", node.Name, 1, sliceDevice("gpu-4", "gpu", g(0)), sliceDevice("gpu-9", "gpu", g(5)))
	stale.Spec.Pool.Name = "gpu-node"
	other := nvidiaSlice("other-node-gpu.nvidia.com-a", "other-node", 2, sliceDevice("gpu-9", "gpu", g(5)))
	other.Spec.Pool.Name = "gpu-node"
	nic := nvidiaSlice("gpu-node-sriov", node.Name, 5, sliceDevice("gpu-9", "gpu", g(5)))
	nic.Spec.Driver, nic.Spec.Pool.Name = "sriovnetwork.k8s.io", "gpu-node"
	kube := fake.NewClientset(mine, stale, other, nic)

	d.Slices = KubeSlices{Kube: kube}
	d.PodResources = kubeletReport{
		GPUs: []v1alpha1.GPUAllocation{
			{Pod: "llm/decode-0", GPUs: []string{g(0)}},
			{Pod: "llm/prefill-0", GPUs: []string{g(2)}},
		},
		DRA: []podresources.DRAAllocation{
			{Pod: "llm/decode-0", Devices: []podresources.DRADevice{draDev("gpu-0"), draDev("gpu-1"), draDev("gpu-3")}},
			{Pod: "llm/decode-1", Devices: []podresources.DRADevice{draDev("gpu-4"), draDev("gpu-9")}},
			{Pod: "llm/decode-2", Devices: []podresources.DRADevice{draDev("gpu-4"), draDev("gpu-5")}},
			{Pod: "llm/mig", Devices: []podresources.DRADevice{draDev("gpu-6-mig-9-4-4")}},
			{Pod: "llm/no-uuid", Devices: []podresources.DRADevice{draDev("gpu-7")}},
		},
	}
	st := d.Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))

	want := []v1alpha1.GPUAllocation{
		{Pod: "llm/decode-0", GPUs: slices.Sorted(slices.Values([]string{g(0), g(1), g(3)}))},
		{Pod: "llm/decode-1", GPUs: []string{g(4)}},
		{Pod: "llm/decode-2", GPUs: []string{g(5)}},
		{Pod: "llm/prefill-0", GPUs: []string{g(2)}},
	}
	if !reflect.DeepEqual(st.GPUAllocations, want) {
		t.Fatalf("gpuAllocations:\n got %v\nwant %v", st.GPUAllocations, want)
	}
	if got := sliceLists(kube); !reflect.DeepEqual(got, []string{"resource.k8s.io/v1 spec.driver=gpu.nvidia.com,spec.nodeName=" + node.Name}) {
		t.Errorf("ResourceSlice lists: %v, want one of the node's slices of the driver", got)
	}
	if got := conditionOf(st, ConditionGPUAllocationsKnown); got != "True/ForeignDevicesDropped" {
		t.Fatalf("GPUAllocationsKnown: %s", got)
	}
	msg := conditionMessage(st, ConditionGPUAllocationsKnown)
	for _, part := range []string{
		"4 pods hold GPUs",
		"3 allocated devices name no GPU",
		"llm/decode-1=gpu.nvidia.com/gpu-node/gpu-9 (in no ResourceSlice of node " + node.Name + ")",
		"llm/mig=gpu.nvidia.com/gpu-node/gpu-6-mig-9-4-4 (a mig device)",
		"llm/no-uuid=gpu.nvidia.com/gpu-node/gpu-7 (its ResourceSlice gives no uuid)",
		"1 GPUs held by several pods are published for the first of them only: llm/decode-2=" + g(4) + " (shared with llm/decode-1)",
	} {
		if !strings.Contains(msg, part) {
			t.Errorf("GPUAllocationsKnown message lacks %q: %s", part, msg)
		}
	}

	if taken := takenByScheduler(t, node.Name, st); taken != 6 {
		t.Fatalf("GPUs the scheduler sees taken: got %d, want 6", taken)
	}
}

// A node whose kubelet reports no DRA device costs no ResourceSlice list.
func TestDeviceNodeListsNoSlices(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	d := discoverer(m, leaf.Labels{})
	node := hgxNode(m)
	g0 := d.Discover(context.Background(), node).GPUs.GPUs[0].UUID
	kube := fake.NewClientset()
	d.Slices = KubeSlices{Kube: kube}
	d.PodResources = kubeletReport{GPUs: []v1alpha1.GPUAllocation{{Pod: "llm/decode-0", GPUs: []string{g0}}}}
	st := d.Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	if len(kube.Actions()) != 0 {
		t.Errorf("API calls on a device-plugin node: %v", kube.Actions())
	}
	if want := []v1alpha1.GPUAllocation{{Pod: "llm/decode-0", GPUs: []string{g0}}}; !reflect.DeepEqual(st.GPUAllocations, want) {
		t.Errorf("gpuAllocations: got %v, want %v", st.GPUAllocations, want)
	}
	if got := conditionOf(st, ConditionGPUAllocationsKnown); got != "True/PodResourcesListed" {
		t.Errorf("GPUAllocationsKnown: %s", got)
	}
}

// When the slices cannot be listed the device plugin's allocations are
// still published, and GPUAllocationsKnown is False saying why.
func TestDRASliceListFailure(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	d := discoverer(m, leaf.Labels{})
	node := hgxNode(m)
	g0 := d.Discover(context.Background(), node).GPUs.GPUs[0].UUID
	kube := fake.NewClientset()
	kube.PrependReactor("list", "resourceslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`resourceslices.resource.k8s.io is forbidden: User "system:serviceaccount:tandem-agent:tandem-agent" cannot list resource "resourceslices"`)
	})
	d.Slices = KubeSlices{Kube: kube}
	d.PodResources = kubeletReport{
		GPUs: []v1alpha1.GPUAllocation{{Pod: "llm/prefill-0", GPUs: []string{g0}}},
		DRA:  []podresources.DRAAllocation{{Pod: "llm/decode-0", Devices: []podresources.DRADevice{draDev("gpu-1")}}},
	}
	st := d.Discover(context.Background(), node).Status(nil, time.Unix(1000, 0))
	if want := []v1alpha1.GPUAllocation{{Pod: "llm/prefill-0", GPUs: []string{g0}}}; !reflect.DeepEqual(st.GPUAllocations, want) {
		t.Errorf("gpuAllocations: got %v, want %v", st.GPUAllocations, want)
	}
	if got := conditionOf(st, ConditionGPUAllocationsKnown); got != "False/ResourceSlicesUnavailable" {
		t.Fatalf("GPUAllocationsKnown: %s", got)
	}
	msg := conditionMessage(st, ConditionGPUAllocationsKnown)
	for _, part := range []string{"not counting those allocated through DRA", "listing ResourceSlices of driver gpu.nvidia.com on node " + node.Name, "forbidden"} {
		if !strings.Contains(msg, part) {
			t.Errorf("GPUAllocationsKnown message lacks %q: %s", part, msg)
		}
	}
}

func conditionMessage(st v1alpha1.NodeTopologyStatus, t string) string {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Message
		}
	}
	return ""
}
