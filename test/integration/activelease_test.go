package integration

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/scheduler/activelease"
)

// Another tandem scheduler active without leader election (a
// mis-deployment), seen through the active-scheduler Lease it holds: this
// scheduler places no GPU pod while that one renews the Lease, says so in
// the pod's FailedScheduling event, and places it once the other is gone.
// (With two real schedulers in one test, whichever takes a pod first
// decides whether the refusal is seen at all.)
func TestSecondSchedulerWithoutLeaderElectionPlacesNoGPUPod(t *testing.T) {
	cp := createCluster(t, `
nodes:
- {name: gpu, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	ctx := context.Background()
	leases := cp.Client.CoordinationV1().Leases(controlplane.SchedulerNamespace)
	now := metav1.NewMicroTime(time.Now())
	if _, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: activelease.Name, Namespace: controlplane.SchedulerNamespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("other-host_1234"), LeaseDurationSeconds: ptr.To(int32(600)),
			AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cp.StartScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}); err != nil {
		t.Fatalf("starting the scheduler: %v", err)
	}
	createPod(t, cp, "second", 4)
	waitForFailedScheduling(t, cp, "second", "another tandem scheduler (other-host_1234)", "holds Lease tandem-system/tandem-scheduler-active")
	time.Sleep(time.Second)
	pod, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, "second", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "" {
		t.Fatalf("pod second was bound to %s while another scheduler held the Lease", pod.Spec.NodeName)
	}

	// The other scheduler stops cleanly and gives the Lease back.
	lease, err := leases.Get(ctx, activelease.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease.Spec.HolderIdentity, lease.Spec.RenewTime = nil, nil
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForBinding(t, cp, "second")
	lease, err = leases.Get(ctx, activelease.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(lease.Spec.HolderIdentity, ""); h == "" || h == "other-host_1234" {
		t.Fatalf("after the other gave the Lease back this scheduler does not hold it: holder %q", h)
	}
}
