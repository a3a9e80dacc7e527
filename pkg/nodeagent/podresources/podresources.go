// Package podresources asks the kubelet which GPUs it has allocated to which
// pods, through its pod-resources gRPC API on a unix socket: the device
// plugin's devices, and the devices Dynamic Resource Allocation drivers
// prepared for the pods' ResourceClaims.
package podresources

import (
	"cmp"
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

// DefaultDRADriver is NVIDIA's DRA driver for GPUs.
const DefaultDRADriver = "gpu.nvidia.com"

// Lister returns the GPUs each pod holds.
type Lister interface {
	Allocations(ctx context.Context) (Allocations, error)
}

// Allocations is what the kubelet reports of the pods' GPUs.
type Allocations struct {
	// GPUs are the device plugin's: per pod, the distinct GPU UUIDs of the
	// resource, sorted by pod.
	GPUs []v1alpha1.GPUAllocation
	// DRA are the devices of the DRA driver the kubelet prepared for each
	// pod's ResourceClaims, sorted by pod. A DRA device is named by driver,
	// pool and name; its UUID is in the driver's ResourceSlice.
	DRA []DRAAllocation
}

// DRAAllocation is the devices of one driver one pod holds.
type DRAAllocation struct {
	// Pod is namespace/name.
	Pod string
	// Devices are distinct and sorted.
	Devices []DRADevice
}

// DRADevice names a device as the kubelet and the ResourceSlices do: by
// driver, pool and device name.
type DRADevice struct {
	Driver, Pool, Device string
}

func (d DRADevice) String() string { return d.Driver + "/" + d.Pool + "/" + d.Device }

// Client lists allocations from the kubelet. It dials per call, so a kubelet
// restart costs one failed resync at most.
type Client struct {
	Socket string
	// Resource is the extended resource whose device IDs are GPU UUIDs,
	// normally nvidia.com/gpu.
	Resource string
	// DRADriver is the DRA driver whose devices are GPUs, normally
	// gpu.nvidia.com; empty ignores DRA devices.
	DRADriver string
	// Timeout bounds one List call; zero means 10 seconds.
	Timeout time.Duration
}

var _ Lister = Client{}

// Allocations lists the kubelet's pod resources and returns what FromResponse
// makes of them.
func (c Client) Allocations(ctx context.Context) (Allocations, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+c.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return Allocations{}, fmt.Errorf("connecting to kubelet pod-resources socket %s: %w", c.Socket, err)
	}
	defer conn.Close()
	resp, err := podresourcesv1.NewPodResourcesListerClient(conn).List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		return Allocations{}, fmt.Errorf("listing pod resources from %s: %w", c.Socket, err)
	}
	return FromResponse(resp, c.Resource, c.DRADriver), nil
}

// FromResponse extracts from a List response, per pod, the GPU UUIDs of the
// device plugin's resource (time-sliced replicas "GPU-…::3" count as their
// GPU) and the devices of draDriver ("" for none) in the containers'
// dynamic resources. A pod holding neither is left out. A claim shared by
// several containers, or by several pods, names its devices in each.
func FromResponse(resp *podresourcesv1.ListPodResourcesResponse, resource, draDriver string) Allocations {
	byPod := map[string][]string{}
	draByPod := map[string][]DRADevice{}
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
			if draDriver == "" {
				continue
			}
			for _, dr := range ctr.GetDynamicResources() {
				for _, cr := range dr.GetClaimResources() {
					if cr.GetDriverName() != draDriver || cr.GetDeviceName() == "" {
						continue
					}
					draByPod[key] = append(draByPod[key], DRADevice{Driver: draDriver, Pool: cr.GetPoolName(), Device: cr.GetDeviceName()})
				}
			}
		}
	}
	var out Allocations
	for pod, ids := range byPod {
		slices.Sort(ids)
		out.GPUs = append(out.GPUs, v1alpha1.GPUAllocation{Pod: pod, GPUs: slices.Compact(ids)})
	}
	slices.SortFunc(out.GPUs, func(a, b v1alpha1.GPUAllocation) int { return strings.Compare(a.Pod, b.Pod) })
	for pod, devs := range draByPod {
		slices.SortFunc(devs, compareDevices)
		out.DRA = append(out.DRA, DRAAllocation{Pod: pod, Devices: slices.Compact(devs)})
	}
	slices.SortFunc(out.DRA, func(a, b DRAAllocation) int { return strings.Compare(a.Pod, b.Pod) })
	return out
}

func compareDevices(a, b DRADevice) int {
	return cmp.Or(strings.Compare(a.Driver, b.Driver), strings.Compare(a.Pool, b.Pool), strings.Compare(a.Device, b.Device))
}
