package pdaffinity

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// AnnotationPlacement is stamped on every bound P/D pod, through its
// Binding: its node's domain at each level, coarse to fine, as level=value
// pairs, for a sidecar or a tool to read (through the Downward API). No
// serving stack's router reads it: Dynamo's KV-transfer policy reads the
// node label its labelKey names, which its operator copies onto the pod;
// AIBrix pairs within a RoleSet; llm-d's endpoint picker reads no placement
// at all (docs/serving-stacks.md).
const AnnotationPlacement = "tandem.dev/placement"

// Pod labels stamped beside the annotation with placementLabels, copied from
// the node, for tools that select pods by label or read their own labels
// through the Downward API. Dynamo's topology label controller copies the
// same node label under the same key only when the pod lacks it, so the two
// agree.
var stampedLabels = []string{topology.LabelNVLinkDomain, topology.LabelLeaf, topology.LabelSpine}

// Bind binds a P/D pod with its placement annotation on the Binding: the
// apiserver copies a Binding's annotations onto the pod in the same write,
// so the stamp costs no second request. Pods outside a P/D group are left
// to the next binder (DefaultBinder).
func (pl *PDAffinity) Bind(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	if _, err := readState(cycleState); err != nil || pl.handle == nil {
		return fwk.NewStatus(fwk.Skip)
	}
	ni, err := pl.handle.SnapshotSharedLister().NodeInfos().Get(nodeName)
	if err != nil || ni.Node() == nil {
		// Without the node's labels there is nothing to stamp.
		return fwk.NewStatus(fwk.Skip)
	}
	binding := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			Annotations: map[string]string{AnnotationPlacement: pl.Placement(ni.Node())}},
		Target: v1.ObjectReference{Kind: "Node", Name: nodeName},
	}
	if err := pl.handle.ClientSet().CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fwk.AsStatus(fmt.Errorf("binding pod %s/%s to node %s: %w", pod.Namespace, pod.Name, nodeName, err))
	}
	klog.FromContext(ctx).V(4).Info("Bound with placement", "pod", klog.KObj(pod), "node", nodeName)
	return nil
}

// PostBind forgets a fully bound unit's plan, counts the pairs the pod
// completes and gives it a Placed event and, with placementLabels, stamps
// the placement labels, a second write.
func (pl *PDAffinity) PostBind(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeName string) {
	s, err := readState(cycleState)
	if err != nil || pl.handle == nil {
		return
	}
	if s.planKey != "" {
		pl.boundIn(pod, s.planKey)
	}
	pl.recordPlaced(ctx, pod, s.member, nodeName)
	if !pl.args.PlacementLabels {
		return
	}
	logger := klog.FromContext(ctx)
	node, err := pl.handle.SnapshotSharedLister().NodeInfos().Get(nodeName)
	if err != nil || node.Node() == nil {
		logger.Error(err, "Cannot stamp placement labels: node not in snapshot", "pod", klog.KObj(pod), "node", nodeName)
		return
	}
	patch, err := pl.labelsPatch(node.Node())
	if err != nil {
		logger.Error(err, "Cannot build placement patch", "pod", klog.KObj(pod))
		return
	}
	if _, err := pl.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		logger.Error(err, "Cannot stamp placement labels", "pod", klog.KObj(pod), "node", nodeName)
		return
	}
	logger.V(4).Info("Stamped placement labels", "pod", klog.KObj(pod), "node", nodeName)
}

// Placement renders a node's domain path as the annotation value.
func (pl *PDAffinity) Placement(node *v1.Node) string {
	path := pl.paths.get(node).path
	parts := make([]string, 0, len(path)+1)
	for i, v := range path {
		if v != "" {
			parts = append(parts, pl.levels[i].Name+"="+v)
		}
	}
	parts = append(parts, "node="+node.Name)
	return strings.Join(parts, ",")
}

func (pl *PDAffinity) labelsPatch(node *v1.Node) ([]byte, error) {
	stamped := map[string]any{}
	for _, key := range stampedLabels {
		if v, ok := node.Labels[key]; ok {
			stamped[key] = v
		}
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{"labels": stamped}})
}
