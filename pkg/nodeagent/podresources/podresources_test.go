package podresources

import (
	"context"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

type fakeKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	resp *podresourcesv1.ListPodResourcesResponse
}

func (f *fakeKubelet) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	return f.resp, nil
}

func serve(t *testing.T, resp *podresourcesv1.ListPodResourcesResponse) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "kubelet.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, &fakeKubelet{resp: resp})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return socket
}

func TestAllocations(t *testing.T) {
	resp := &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{
		{Name: "decode-0", Namespace: "llm", Containers: []*podresourcesv1.ContainerResources{
			{Name: "engine", Devices: []*podresourcesv1.ContainerDevices{
				{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-b", "GPU-a"}},
				{ResourceName: "rdma/ib", DeviceIds: []string{"mlx5_0"}},
			}},
			{Name: "sidecar", Devices: []*podresourcesv1.ContainerDevices{
				{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-c::2"}},
			}},
		}},
		{Name: "prefill-0", Namespace: "llm", Containers: []*podresourcesv1.ContainerResources{
			{Name: "engine", Devices: []*podresourcesv1.ContainerDevices{{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-d::0", "GPU-d::1"}}}},
		}},
		{Name: "web", Namespace: "default", Containers: []*podresourcesv1.ContainerResources{{Name: "nginx"}}},
	}}
	socket := serve(t, resp)
	got, err := Client{Socket: socket, Resource: "nvidia.com/gpu"}.Allocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Allocations{GPUs: []v1alpha1.GPUAllocation{
		{Pod: "llm/decode-0", GPUs: []string{"GPU-a", "GPU-b", "GPU-c"}},
		{Pod: "llm/prefill-0", GPUs: []string{"GPU-d"}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allocations:\n got %+v\nwant %+v", got, want)
	}
}

// draResponse is what a kubelet with KubeletPodResourcesDynamicResources
// (GA and locked on in 1.36) lists for pods holding GPUs through NVIDIA's
// DRA driver, a NIC through another driver, and both kinds of GPUs.
func draResponse() *podresourcesv1.ListPodResourcesResponse {
	gpu := func(dev string) *podresourcesv1.ClaimResource {
		return &podresourcesv1.ClaimResource{DriverName: "gpu.nvidia.com", PoolName: "gpu-node-1", DeviceName: dev,
			CdiDevices: []*podresourcesv1.CDIDevice{{Name: "k8s.gpu.nvidia.com/claim=" + dev}}}
	}
	return &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{
		{Name: "decode-0", Namespace: "llm", Containers: []*podresourcesv1.ContainerResources{
			{Name: "engine", DynamicResources: []*podresourcesv1.DynamicResource{
				{ClaimName: "decode-0-gpus", ClaimNamespace: "llm", ClaimResources: []*podresourcesv1.ClaimResource{gpu("gpu-3"), gpu("gpu-1")}},
				{ClaimName: "decode-0-nic", ClaimNamespace: "llm", ClaimResources: []*podresourcesv1.ClaimResource{
					{DriverName: "sriovnetwork.k8s.io", PoolName: "gpu-node-1", DeviceName: "pf0vf1"},
				}},
			}},
			// A container sharing its pod's claim lists its devices again.
			{Name: "proxy", DynamicResources: []*podresourcesv1.DynamicResource{
				{ClaimName: "decode-0-gpus", ClaimNamespace: "llm", ClaimResources: []*podresourcesv1.ClaimResource{gpu("gpu-1")}},
			}},
		}},
		{Name: "mixed", Namespace: "llm", Containers: []*podresourcesv1.ContainerResources{
			{Name: "engine",
				Devices: []*podresourcesv1.ContainerDevices{{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-a"}}},
				DynamicResources: []*podresourcesv1.DynamicResource{
					{ClaimName: "mixed-gpu", ClaimNamespace: "llm", ClaimResources: []*podresourcesv1.ClaimResource{gpu("gpu-0-mig-19-0-1")}},
				}},
		}},
		{Name: "nic-only", Namespace: "llm", Containers: []*podresourcesv1.ContainerResources{
			{Name: "engine", DynamicResources: []*podresourcesv1.DynamicResource{
				{ClaimName: "nic", ClaimNamespace: "llm", ClaimResources: []*podresourcesv1.ClaimResource{
					{DriverName: "sriovnetwork.k8s.io", PoolName: "gpu-node-1", DeviceName: "pf0vf2"},
				}},
			}},
		}},
	}}
}

func TestAllocationsWithDynamicResources(t *testing.T) {
	socket := serve(t, draResponse())
	got, err := Client{Socket: socket, Resource: "nvidia.com/gpu", DRADriver: "gpu.nvidia.com"}.Allocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Allocations{
		GPUs: []v1alpha1.GPUAllocation{{Pod: "llm/mixed", GPUs: []string{"GPU-a"}}},
		DRA: []DRAAllocation{
			{Pod: "llm/decode-0", Devices: []DRADevice{
				{Driver: "gpu.nvidia.com", Pool: "gpu-node-1", Device: "gpu-1"},
				{Driver: "gpu.nvidia.com", Pool: "gpu-node-1", Device: "gpu-3"},
			}},
			{Pod: "llm/mixed", Devices: []DRADevice{{Driver: "gpu.nvidia.com", Pool: "gpu-node-1", Device: "gpu-0-mig-19-0-1"}}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allocations:\n got %+v\nwant %+v", got, want)
	}
}

// With no DRA driver configured the dynamic resources are ignored.
func TestAllocationsDRADriverOff(t *testing.T) {
	got := FromResponse(draResponse(), "nvidia.com/gpu", "")
	want := Allocations{GPUs: []v1alpha1.GPUAllocation{{Pod: "llm/mixed", GPUs: []string{"GPU-a"}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allocations:\n got %+v\nwant %+v", got, want)
	}
}

func TestAllocationsNoKubelet(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "absent.sock")
	_, err := Client{Socket: socket, Resource: "nvidia.com/gpu"}.Allocations(context.Background())
	if err == nil || !strings.Contains(err.Error(), socket) {
		t.Errorf("error %v does not name %s", err, socket)
	}
}
