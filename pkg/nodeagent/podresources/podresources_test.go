package podresources

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
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
	if len(got) != 2 || got[0].Pod != "llm/decode-0" || strings.Join(got[0].GPUs, ",") != "GPU-a,GPU-b,GPU-c" ||
		got[1].Pod != "llm/prefill-0" || strings.Join(got[1].GPUs, ",") != "GPU-d" {
		t.Errorf("allocations = %+v", got)
	}
}

func TestAllocationsNoKubelet(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "absent.sock")
	_, err := Client{Socket: socket, Resource: "nvidia.com/gpu"}.Allocations(context.Background())
	if err == nil || !strings.Contains(err.Error(), socket) {
		t.Errorf("error %v does not name %s", err, socket)
	}
}
