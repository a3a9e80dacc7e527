package nodeagent

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/podresources"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

type fixedAllocations []v1alpha1.GPUAllocation

func (f fixedAllocations) Allocations(context.Context) (podresources.Allocations, error) {
	return podresources.Allocations{GPUs: f}, nil
}

// The kubelet lists device ids that are not whole GPUs of the node: MIG
// devices, and a GPU that fell off the bus while its pod still runs. The
// agent publishes the GPUs it knows, names the others in the condition, and
// the scheduler can still use the report.
func TestAllocationsNamingNoGPUOfTheNodeAreDropped(t *testing.T) {
	m := build(t, fixtures.HGXH100())
	d := discoverer(m, leaf.Labels{})
	gpus := d.Discover(context.Background(), hgxNode(m)).Status(nil, time.Unix(1000, 0)).GPUs
	g0, g1 := gpus[0].UUID, gpus[1].UUID

	d.PodResources = fixedAllocations{
		{Pod: "serving/decode-0", GPUs: []string{g0, "MIG-6f2c1a44-0000-5000-8000-000000000001"}},
		{Pod: "serving/prefill-0", GPUs: []string{"GPU-0b0b0b0b-dead-beef-0000-000000000009"}},
		{Pod: "serving/prefill-1", GPUs: []string{g1}},
	}
	st := d.Discover(context.Background(), hgxNode(m)).Status(nil, time.Unix(1000, 0))

	want := []v1alpha1.GPUAllocation{{Pod: "serving/decode-0", GPUs: []string{g0}}, {Pod: "serving/prefill-1", GPUs: []string{g1}}}
	if len(st.GPUAllocations) != len(want) {
		t.Fatalf("allocations: got %v, want %v", st.GPUAllocations, want)
	}
	for i := range want {
		if st.GPUAllocations[i].Pod != want[i].Pod || strings.Join(st.GPUAllocations[i].GPUs, ",") != strings.Join(want[i].GPUs, ",") {
			t.Fatalf("allocations: got %v, want %v", st.GPUAllocations, want)
		}
	}
	if got := conditionOf(st, ConditionGPUAllocationsKnown); got != "True/ForeignDevicesDropped" {
		t.Fatalf("GPUAllocationsKnown: %s", got)
	}
	for _, c := range st.Conditions {
		if c.Type == ConditionGPUAllocationsKnown && (!strings.Contains(c.Message, "serving/prefill-0=GPU-0b0b0b0b") || !strings.Contains(c.Message, "serving/decode-0=MIG-")) {
			t.Fatalf("GPUAllocationsKnown message names neither foreign id: %s", c.Message)
		}
	}

	if taken := takenByScheduler(t, m.Spec.Hostname, st); taken != 2 {
		t.Fatalf("GPUs the scheduler sees taken: got %d, want 2", taken)
	}
}

// takenByScheduler is how many of the node's GPUs the scheduler counts as
// taken from the published status; it fails the test if the scheduler
// would refuse the report.
func takenByScheduler(t *testing.T, node string, st v1alpha1.NodeTopologyStatus) int {
	t.Helper()
	nt := &v1alpha1.NodeTopology{ObjectMeta: metav1.ObjectMeta{Name: node}, Status: st}
	report := topologysource.ReportOf(nt)
	n, err := topology.CompileNodeGPUs(report)
	if err != nil {
		t.Fatalf("the scheduler refuses the published report: %v", err)
	}
	taken := 0
	for _, u := range n.NewUsed(report.Allocations, nil) {
		if u {
			taken++
		}
	}
	return taken
}
