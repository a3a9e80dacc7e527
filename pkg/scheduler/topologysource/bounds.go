package topologysource

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// MaxPodGPUs bounds the GPUs one pod may request. No node has this many (a
// NodeTopology lists at most 64; time-sliced GPUs multiply the device count
// by their replicas), and keeping every pod's count this small keeps a
// unit's GPU total (at most MaxPodGPUs × the largest unit) far from
// overflowing.
const MaxPodGPUs = 1024

// GPUCount is the number of GPUs the pod requests under resource name,
// counting init containers, sidecars and overhead as the kubelet does, or
// an error naming the pod when it asks for more than MaxPodGPUs.
func GPUCount(pod *v1.Pod, name v1.ResourceName) (int, error) {
	q, ok := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})[name]
	if !ok {
		return 0, nil
	}
	// Compared as quantities: a quantity beyond int64 has no Value.
	if q.Sign() < 0 || q.Cmp(*resource.NewQuantity(MaxPodGPUs, resource.DecimalSI)) > 0 {
		return 0, fmt.Errorf("pod %s/%s requests %s %s, more than %d GPUs", pod.Namespace, pod.Name, q.String(), name, MaxPodGPUs)
	}
	return int(q.Value()), nil
}
