package integration

import (
	"testing"

	"k8s.io/component-base/configz"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/internal/controlplane"
)

// Two tandem schedulers without leader election (a mis-deployment): the one
// that placed a GPU pod first holds the active-scheduler Lease, and the
// other places no GPU pod, saying so in the pod's FailedScheduling event,
// so no GPU is promised twice.
func TestSecondSchedulerWithoutLeaderElectionPlacesNoGPUPod(t *testing.T) {
	cp := startCluster(t, `
nodes:
- {name: gpu, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	createPod(t, cp, "first", 4)
	waitForBinding(t, cp, "first")
	// One process, two schedulers: the second registers the process-wide
	// configuration name the first holds.
	configz.Delete("componentconfig")
	if err := cp.StartScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}); err != nil {
		t.Fatalf("starting a second scheduler: %v", err)
	}
	createPod(t, cp, "second", 4)
	waitForFailedScheduling(t, cp, "second", "another tandem scheduler", "holds Lease tandem-system/tandem-scheduler-active")
	waitForBinding(t, cp, "second")
}
