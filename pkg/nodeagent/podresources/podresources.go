// Package podresources asks the kubelet which GPUs it has allocated to which
// pods, through its pod-resources gRPC API on a unix socket.
package podresources

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

// DefaultSocket is where the kubelet serves the API.
const DefaultSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// Lister returns the GPUs each pod holds.
type Lister interface {
	Allocations(ctx context.Context) ([]v1alpha1.GPUAllocation, error)
}

// Client lists allocations from the kubelet. It dials per call, so a kubelet
// restart costs one failed resync at most.
type Client struct {
	Socket string
	// Resource is the extended resource whose device IDs are GPU UUIDs,
	// normally nvidia.com/gpu.
	Resource string
	// Timeout bounds one List call; zero means 10 seconds.
	Timeout time.Duration
}

var _ Lister = Client{}

// Allocations returns one entry per pod holding at least one device of
// Resource, sorted by pod, each with its distinct GPU UUIDs sorted.
// Time-sliced replicas ("GPU-…::3") count as their GPU.
func (c Client) Allocations(ctx context.Context) ([]v1alpha1.GPUAllocation, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+c.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to kubelet pod-resources socket %s: %w", c.Socket, err)
	}
	defer conn.Close()
	resp, err := podresourcesv1.NewPodResourcesListerClient(conn).List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing pod resources from %s: %w", c.Socket, err)
	}
	return FromResponse(resp, c.Resource), nil
}

// FromResponse extracts the GPU allocations of resource from a List response.
func FromResponse(resp *podresourcesv1.ListPodResourcesResponse, resource string) []v1alpha1.GPUAllocation {
	byPod := map[string][]string{}
	for _, pod := range resp.GetPodResources() {
		key := pod.GetNamespace() + "/" + pod.GetName()
		for _, ctr := range pod.GetContainers() {
			for _, dev := range ctr.GetDevices() {
				if dev.GetResourceName() != resource {
					continue
				}
				for _, id := range dev.GetDeviceIds() {
					if uuid, _, _ := strings.Cut(id, "::"); uuid != "" {
						byPod[key] = append(byPod[key], uuid)
					}
				}
			}
		}
	}
	var out []v1alpha1.GPUAllocation
	for pod, ids := range byPod {
		slices.Sort(ids)
		out = append(out, v1alpha1.GPUAllocation{Pod: pod, GPUs: slices.Compact(ids)})
	}
	slices.SortFunc(out, func(a, b v1alpha1.GPUAllocation) int { return strings.Compare(a.Pod, b.Pod) })
	return out
}
