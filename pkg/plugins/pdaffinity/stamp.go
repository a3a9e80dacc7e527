package pdaffinity

import (
	"context"
	"encoding/json"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// AnnotationPlacement is stamped on every bound P/D pod: its node's domain at
// each level, coarse to fine, as level=value pairs, so that a router (llm-d's
// topology filter, Dynamo's KV transfer policy, AIBrix's P/D router) can pair
// requests along the placement.
const AnnotationPlacement = "tandem.dev/placement"

// Pod labels stamped beside the annotation, for routers that select by label.
var stampedLabels = []string{topology.LabelNVLinkDomain, topology.LabelLeaf, topology.LabelSpine}

// PostBind stamps the pod's placement on it.
func (pl *PDAffinity) PostBind(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeName string) {
	s, err := readState(cycleState)
	if err != nil || pl.handle == nil {
		return
	}
	if s.member.Unit != "" && pl.plans != nil {
		pl.boundIn(pod, s.member)
	}
	logger := klog.FromContext(ctx)
	node, err := pl.handle.SnapshotSharedLister().NodeInfos().Get(nodeName)
	if err != nil || node.Node() == nil {
		logger.Error(err, "Cannot stamp placement: node not in snapshot", "pod", klog.KObj(pod), "node", nodeName)
		return
	}
	patch, err := pl.placementPatch(node.Node())
	if err != nil {
		logger.Error(err, "Cannot build placement patch", "pod", klog.KObj(pod))
		return
	}
	if _, err := pl.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		logger.Error(err, "Cannot stamp placement", "pod", klog.KObj(pod), "node", nodeName)
		return
	}
	logger.V(4).Info("Stamped placement", "pod", klog.KObj(pod), "node", nodeName)
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

func (pl *PDAffinity) placementPatch(node *v1.Node) ([]byte, error) {
	stamped := map[string]any{}
	for _, key := range stampedLabels {
		if v, ok := node.Labels[key]; ok {
			stamped[key] = v
		}
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{AnnotationPlacement: pl.Placement(node)},
		"labels":      stamped,
	}})
}
