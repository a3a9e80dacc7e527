package clusterdesc

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

// HolderNamespace is where the pods of another tenant live that hold GPUs
// before a workload arrives.
const HolderNamespace = "other-tenant"

// Holder is a pod outside the described workload, in HolderNamespace, that
// the kubelet has given some of a node's GPUs.
type Holder struct {
	// Name is the pod's name.
	Name string
	// GPUs are the indexes of the GPUs it holds.
	GPUs []int32
}

// HolderPod is the pod a node's AllocatedGPUs are reported held by.
func HolderPod(node string) string { return HolderNamespace + "/" + holderName(node) }

func holderName(node string) string { return "holder-" + node }

// GPUCount is how many GPUs the node advertises: as an extended resource,
// or on a DRA node as devices of its ResourceSlice.
func (n *Node) GPUCount() int {
	if n.ResourceSlice != nil {
		return len(n.ResourceSlice.Spec.Devices)
	}
	q := n.Node.Status.Capacity[GPUResourceName]
	return int(q.Value())
}

// Islands are the indexes of the node's GPUs, one list per NVLink island, as
// its NodeTopology reports them. A node without a NodeTopology is one island
// of all its GPUs: nothing says how they are linked.
func (n *Node) Islands() [][]int32 {
	if n.Topology != nil && len(n.Topology.Status.GPUs) > 0 {
		return n.Topology.Status.Islands()
	}
	all := make([]int32, n.GPUCount())
	for i := range all {
		all[i] = int32(i)
	}
	if len(all) == 0 {
		return nil
	}
	return [][]int32{all}
}

// Held reports which GPU indexes the node's holders have.
func (n *Node) Held() map[int32]bool {
	held := map[int32]bool{}
	for _, h := range n.Holders {
		for _, g := range h.GPUs {
			held[g] = true
		}
	}
	return held
}

// Hold gives the GPUs with the given indexes to a new holder pod called
// name: it is added to Holders and, when the node has a NodeTopology, to
// its status.gpuAllocations, as the agent reports what the kubelet
// allocated. It refuses GPUs the node does not have or that are held.
func (n *Node) Hold(name string, gpus []int32) error {
	if len(gpus) == 0 {
		return fmt.Errorf("node %s: holder %s: no GPUs to hold", n.Node.Name, name)
	}
	exists := map[int32]bool{}
	for _, island := range n.Islands() {
		for _, g := range island {
			exists[g] = true
		}
	}
	held := n.Held()
	for _, h := range n.Holders {
		if h.Name == name {
			return fmt.Errorf("node %s: holder %s exists already", n.Node.Name, name)
		}
	}
	for _, g := range gpus {
		if !exists[g] {
			return fmt.Errorf("node %s: holder %s: no GPU %d", n.Node.Name, name, g)
		}
		if held[g] {
			return fmt.Errorf("node %s: holder %s: GPU %d is held already", n.Node.Name, name, g)
		}
		held[g] = true
	}
	n.Holders = append(n.Holders, Holder{Name: name, GPUs: slices.Clone(gpus)})
	if n.Topology == nil {
		return nil
	}
	alloc := topologyv1alpha1.GPUAllocation{Pod: HolderNamespace + "/" + name}
	for _, g := range gpus {
		for _, gpu := range n.Topology.Status.GPUs {
			if gpu.Index == g {
				alloc.GPUs = append(alloc.GPUs, gpu.UUID)
			}
		}
	}
	n.Topology.Status.GPUAllocations = append(n.Topology.Status.GPUAllocations, alloc)
	return nil
}

// HolderPods are the holders of every node as pods already bound to their
// node (spec.nodeName set) and requesting their GPUs, so that the default
// scheduler's NodeResourcesFit counts them as the kubelet would.
func HolderPods(nodes []Node) []*v1.Pod {
	var out []*v1.Pod
	for _, n := range nodes {
		for _, h := range n.Holders {
			gpus := *resource.NewQuantity(int64(len(h.GPUs)), resource.DecimalSI)
			out = append(out, &v1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: h.Name, Namespace: HolderNamespace, Labels: map[string]string{"app": "other-tenant"}},
				Spec: v1.PodSpec{
					NodeName: n.Node.Name,
					Containers: []v1.Container{{
						Name: "job", Image: "registry.k8s.io/pause:3.10",
						Resources: v1.ResourceRequirements{
							Requests: v1.ResourceList{GPUResourceName: gpus},
							Limits:   v1.ResourceList{GPUResourceName: gpus},
						},
					}},
				},
			})
		}
	}
	return out
}

// CreateHolders creates HolderNamespace and every node's holder pods.
func CreateHolders(ctx context.Context, client kubernetes.Interface, nodes []Node) error {
	pods := HolderPods(nodes)
	if len(pods) == 0 {
		return nil
	}
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: HolderNamespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", HolderNamespace, err)
	}
	for _, p := range pods {
		if _, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating holder pod %s/%s on node %s: %w", p.Namespace, p.Name, p.Spec.NodeName, err)
		}
	}
	return nil
}
