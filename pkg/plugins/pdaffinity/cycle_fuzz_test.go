package pdaffinity

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// FuzzPodThroughTheCycle feeds a pod with arbitrary P/D labels, annotations
// and GPU request through PreFilter, Filter, PreScore and Score on the test
// fabric, beside placed pods of its group: no panic, a refusal always says
// why, and every score is in [0, 100], for skipped pods too.
func FuzzPodThroughTheCycle(f *testing.F) {
	f.Add("decode", "chat", "", "", "", "4", "1:2", true)
	f.Add("prefill", "u", "2", "leaf", "", "4", "", true)
	f.Add("decode", "u", "4611686018427387904", "", "", "4", "", false)
	f.Add("prefill", "chat", "", "", "", "4", "9223372036854775807:1", true)
	f.Add("decode", "g", "", "rack", "", "1", "", false)
	f.Add("", "g", "", "", "", "2", "", false)
	f.Add("decode", "u", "", "", "u-pg", "8", "", true)
	f.Add("worker", "chat", "3", "nvlink-domain", "", "9223372036854775807", "0:0", true)
	f.Fuzz(func(t *testing.T, role, group, unitSize, requiredLevel, podGroup, gpus, ratio string, placed bool) {
		labels := map[string]string{}
		for k, v := range map[string]string{LabelRole: role, LabelGroup: group, LabelUnitSize: unitSize, LabelPodGroup: podGroup} {
			if v != "" {
				labels[k] = v
			}
		}
		annotations := map[string]string{}
		if requiredLevel != "" {
			annotations[AnnotationRequiredLevel] = requiredLevel
		}
		if ratio != "" {
			annotations[AnnotationPDRatio] = ratio
		}
		q, err := resource.ParseQuantity(gpus)
		if err != nil {
			return
		}
		pod := st.MakePod().Name("x").Namespace("default").UID("x").Labels(labels).Annotations(annotations).Obj()
		pod.Spec.Containers = []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{"nvidia.com/gpu": q}, Limits: v1.ResourceList{"nvidia.com/gpu": q}}}}
		var peers []*v1.Pod
		if placed {
			peers = []*v1.Pod{
				engine("p0", "prefill", group, 2, LabelUnitSize, unitSize).Node("a2").Obj(),
				engine("d0", "decode", group, 2, LabelUnitSize, unitSize).Node("a1").Obj(),
			}
		}
		pl := newTestPlugin(t, nil)
		c, status := runCycle(t, pl, pod, fabricNodes(), peers...)
		ctx := context.Background()
		switch status.Code() {
		case fwk.Skip:
			if s := pl.PreScore(ctx, c.state, pod, nil); s.Code() != fwk.Skip {
				t.Fatalf("PreScore of a pod PreFilter skipped: %v", s)
			}
			if _, s := pl.Score(ctx, c.state, pod, c.infos["a1"]); s.IsSuccess() {
				t.Fatal("Score of a pod PreFilter skipped succeeded")
			}
			return
		case fwk.Success:
		default:
			if status.Message() == "" {
				t.Fatalf("PreFilter refused the pod with code %v and no reason", status.Code())
			}
			return
		}
		if !pl.PreScore(ctx, c.state, pod, nil).IsSuccess() {
			return
		}
		for name, info := range c.infos {
			fs := pl.Filter(ctx, c.state, pod, info)
			if !fs.IsSuccess() && fs.Message() == "" {
				t.Fatalf("Filter rejected node %s with no reason", name)
			}
			score, ss := pl.Score(ctx, c.state, pod, info)
			if ss.IsSuccess() && (score < 0 || score > fwk.MaxNodeScore) {
				t.Fatalf("score %d on node %s", score, name)
			}
		}
	})
}
