package nvlinktopo

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	clocktesting "k8s.io/utils/clock/testing"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// FuzzNodeTopologyThroughTheCycle feeds an arbitrary NodeTopology status
// (seeded with every hardware shape the fixtures know) and a pod with
// arbitrary GPU count and overrides through PreFilter, Filter, PreScore,
// Score, Reserve and Unreserve: no panic, every refusal says why, every
// score is in [0, 100], and a skipped pod is skipped by PreScore too.
func FuzzNodeTopologyThroughTheCycle(f *testing.F) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, shape := range clusterdesc.Shapes() {
		desc, err := clusterdesc.Parse([]byte(`nodes: [{name: "n", shape: "` + shape + `", leaf: l1, nvlinkDomain: r1, allocatedGPUs: [0]}]`))
		if err != nil {
			// A shape without GPUs.
			desc, err = clusterdesc.Parse([]byte(`nodes: [{name: "n", shape: "` + shape + `"}]`))
		}
		if err != nil {
			f.Fatal(err)
		}
		for _, n := range desc.Build(now) {
			if n.Topology == nil {
				continue
			}
			data, err := json.Marshal(n.Topology.Status)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, "2", "", "", "")
			f.Add(data, "1", "true", "Preferred", "")
			f.Add(data, "4", "", "Ignore", "true")
		}
	}
	f.Add([]byte(`{"gpus":[{"index":0,"uuid":"a","island":0},{"index":1,"uuid":"a","island":0}],"lastHeartbeatTime":"2100-01-01T00:00:00Z"}`), "2", "", "", "")
	f.Fuzz(func(t *testing.T, status []byte, gpus, rdma, island, mig string) {
		var st topologyv1alpha1.NodeTopologyStatus
		if json.Unmarshal(status, &st) != nil {
			return
		}
		q, err := resource.ParseQuantity(gpus)
		if err != nil {
			return
		}
		if st.LastHeartbeatTime.IsZero() {
			st.LastHeartbeatTime = metav1.NewTime(now)
		}
		nt := &topologyv1alpha1.NodeTopology{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: st}
		cluster := topology.NewCluster()
		cluster.SetReport("n", topologysource.ReportOf(nt))
		pl, err := New(validArgs(), cluster, clocktesting.NewFakePassiveClock(now))
		if err != nil {
			t.Fatal(err)
		}
		pod := fuzzPod(q, map[string]string{AnnotationRDMA: rdma, AnnotationIslandPolicy: island, AnnotationMIG: mig})
		ctx := context.Background()
		state := framework.NewCycleState()
		_, s := pl.PreFilter(ctx, state, pod, nil)
		switch s.Code() {
		case fwk.Skip:
			if ps := pl.PreScore(ctx, state, pod, nil); ps.Code() != fwk.Skip {
				t.Fatalf("PreScore of a pod PreFilter skipped: %v", ps)
			}
			return
		case fwk.Success:
		default:
			if s.Message() == "" {
				t.Fatalf("PreFilter refused with code %v and no reason", s.Code())
			}
			return
		}
		info := framework.NewNodeInfo()
		info.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}})
		if fs := pl.Filter(ctx, state, pod, info); !fs.IsSuccess() {
			if fs.Message() == "" {
				t.Fatalf("Filter refused with code %v and no reason", fs.Code())
			}
			return
		}
		if pl.PreScore(ctx, state, pod, nil).IsSuccess() {
			score, ss := pl.Score(ctx, state, pod, info)
			if !ss.IsSuccess() || score < 0 || score > fwk.MaxNodeScore {
				t.Fatalf("Score = %d, %v", score, ss)
			}
		}
		if rs := pl.Reserve(ctx, state, pod, "n"); rs.IsSuccess() {
			pl.Unreserve(ctx, state, pod, "n")
		} else if rs.Message() == "" {
			t.Fatalf("Reserve refused with code %v and no reason", rs.Code())
		}
	})
}

func fuzzPod(gpus resource.Quantity, annotations map[string]string) *v1.Pod {
	set := map[string]string{}
	for k, v := range annotations {
		if v != "" {
			set[k] = v
		}
	}
	pod := st.MakePod().Name("p").Namespace("default").UID("p").Annotations(set).Obj()
	pod.Spec.Containers = []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{gpu: gpus}, Limits: v1.ResourceList{gpu: gpus}}}}
	return pod
}
