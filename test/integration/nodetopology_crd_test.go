package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/nodeagent"
)

// The CRD's CEL rules reject a NodeTopology that contradicts itself where
// CEL can tell within its cost limits; the scheduler's adapter and model
// catch the rest (pkg/topology, TestCompileRejectsContradictions).
func TestNodeTopologyCRDRejectsContradictions(t *testing.T) {
	cp := controlplane.StartControlPlane(t)
	ctx := context.Background()
	desc, err := clusterdesc.Parse([]byte(`nodes: [{name: hgx, shape: hgx-h100, leaf: l1}, {name: nvl, shape: h100-nvl, leaf: l1}]`))
	if err != nil {
		t.Fatal(err)
	}
	built := desc.Build(time.Now())
	good := map[string]*topologyv1alpha1.NodeTopology{}
	for _, n := range built {
		good[n.Node.Name] = n.Topology
	}
	if err := clusterdesc.Create(ctx, cp.Client, cp.Tandem, built); err != nil {
		t.Fatal(err)
	}
	client := cp.Tandem.TandemV1alpha1().NodeTopologies()

	for _, tc := range []struct {
		name, node string
		mutate     func(*topologyv1alpha1.NodeTopologyStatus)
		want       string // empty: accepted
	}{
		{name: "the agent's own picture", node: "hgx", mutate: func(*topologyv1alpha1.NodeTopologyStatus) {}},
		{name: "the agent's own picture of NVL pairs", node: "nvl", mutate: func(*topologyv1alpha1.NodeTopologyStatus) {}},
		{name: "duplicate GPU UUIDs", node: "hgx", mutate: func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[5].UUID = s.GPUs[2].UUID },
			want: "each GPU's uuid must be unique"},
		{name: "a GPU its own peer", node: "hgx", mutate: func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[3].NVLinkPeers = append(s.GPUs[3].NVLinkPeers, 3) },
			want: "a GPU is not its own NVLink peer"},
		{name: "a peer that is no GPU of the node", node: "hgx", mutate: func(s *topologyv1alpha1.NodeTopologyStatus) { s.GPUs[3].NVLinkPeers = []int32{42} },
			want: "nvlinkPeers must name GPUs of this node on the GPU's own island"},
		{name: "a peer on another island", node: "nvl", mutate: func(s *topologyv1alpha1.NodeTopologyStatus) {
			s.GPUs[0].NVLinkPeers = append(s.GPUs[0].NVLinkPeers, otherIslandGPU(s, 0))
		}, want: "nvlinkPeers must name GPUs of this node on the GPU's own island"},
		{name: "a GPU moved off the island of its peers", node: "nvl", mutate: func(s *topologyv1alpha1.NodeTopologyStatus) {
			s.GPUs[0].Island = s.GPUs[2].Island
		}, want: "nvlinkPeers must name GPUs of this node on the GPU's own island"},
		{name: "GPUDirect ready with a failed check", node: "hgx", mutate: func(s *topologyv1alpha1.NodeTopologyStatus) {
			s.GPUDirectRDMA.Ready = true
			s.GPUDirectRDMA.Checks = append(s.GPUDirectRDMA.Checks, topologyv1alpha1.GPUDirectCheck{Name: "acs-redirect", Result: topologyv1alpha1.CheckFail, Reason: "RedirectEnabled"})
		}, want: "ready must be false when a check failed"},
		{name: "GPUDirect ready with an advisory check unknown", node: "hgx", mutate: func(s *topologyv1alpha1.NodeTopologyStatus) {
			s.GPUDirectRDMA.Ready = true
			s.GPUDirectRDMA.Checks = append(s.GPUDirectRDMA.Checks, topologyv1alpha1.GPUDirectCheck{Name: "acs-unread", Result: topologyv1alpha1.CheckUnknown, Reason: "ConfigSpaceUnreadable"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			current, err := client.Get(ctx, tc.node, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			updated := current.DeepCopy()
			updated.Status = *good[tc.node].Status.DeepCopy()
			tc.mutate(&updated.Status)
			_, err = client.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("accepted, want rejected with %q", tc.want)
			case !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("got %v, want Invalid with %q", err, tc.want)
			}
		})
	}
}

// otherIslandGPU is the index of a GPU not on GPU i's island.
func otherIslandGPU(s *topologyv1alpha1.NodeTopologyStatus, i int) int32 {
	for _, g := range s.GPUs {
		if g.Island != s.GPUs[i].Island {
			return g.Index
		}
	}
	panic("one island only")
}

// kubectl get ntopo -o wide shows a node's spine and why GPUDirect RDMA is
// not ready, read from the agent's GPUDirectRDMAReady condition.
func TestNodeTopologyPrinterColumns(t *testing.T) {
	cp := controlplane.StartControlPlane(t)
	ctx := context.Background()
	desc, err := clusterdesc.Parse([]byte(`nodes: [{name: hgx, shape: hgx-h100, spine: s1, leaf: l1, gpuDirectBroken: true}]`))
	if err != nil {
		t.Fatal(err)
	}
	if err := clusterdesc.Create(ctx, cp.Client, cp.Tandem, desc.Build(time.Now())); err != nil {
		t.Fatal(err)
	}
	client := cp.Tandem.TandemV1alpha1().NodeTopologies()
	nt, err := client.Get(ctx, "hgx", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nt.Status.Conditions = append(nt.Status.Conditions, metav1.Condition{Type: nodeagent.ConditionGPUDirectRDMAReady, Status: metav1.ConditionFalse,
		Reason: "ACSRedirectEnabled", Message: "acs: redirect enabled", LastTransitionTime: metav1.Now()})
	if _, err := client.UpdateStatus(ctx, nt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	var table metav1.Table
	if err := cp.Tandem.TandemV1alpha1().RESTClient().Get().Resource("nodetopologies").Name("hgx").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(ctx).Into(&table); err != nil {
		t.Fatal(err)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("table has %d rows, want 1", len(table.Rows))
	}
	cells := map[string]any{}
	for i, c := range table.ColumnDefinitions {
		cells[c.Name] = table.Rows[0].Cells[i]
	}
	for column, want := range map[string]any{"GPUs": int64(8), "Spine": "s1", "Leaf": "l1", "GPUDirect": false, "GPUDirect-Reason": "ACSRedirectEnabled"} {
		got, ok := cells[column]
		if !ok {
			t.Errorf("no column %s in %v", column, table.ColumnDefinitions)
			continue
		}
		if f, isFloat := got.(float64); isFloat {
			got = int64(f)
		}
		if got != want {
			t.Errorf("column %s = %v (%T), want %v", column, got, got, want)
		}
	}
}
