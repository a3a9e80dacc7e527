package integration

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
)

// The scheduler is stopped at random points while units are being placed,
// and started again, round after round. A unit that cannot be whole (its
// last decode fits no node) never has a pod bound; every other unit ends
// whole; no node is given more GPUs than it has.
func TestSchedulerStoppedAtRandomPointsLeavesNoHalfPlacedUnit(t *testing.T) {
	cp := createCluster(t, `
nodes:
- {name: gpu, count: 7, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	ctx := context.Background()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	// The unit that cannot be whole: three of its pods fit, the fourth
	// asks for a node label no node has.
	createPodGroup(t, cp, "stuck", 4, 0)
	stuck := createUnit(t, cp, "stuck", 2, 1, 1, withLabels(pdaffinity.LabelPodGroup, "stuck"))
	stuck = append(stuck, createPod(t, cp, "stuck-decode-1", 1,
		withLabels(pdaffinity.LabelRole, "decode", pdaffinity.LabelGroup, "stuck", pdaffinity.LabelPodGroup, "stuck"),
		func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"example.com/absent": "true"} }).Name)

	units := map[string][]string{}
	check := func(stage string, final bool) {
		t.Helper()
		pods, err := cp.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node := map[string]string{}
		perNode := map[string]int64{}
		for _, p := range pods.Items {
			node[p.Name] = p.Spec.NodeName
			if p.Spec.NodeName != "" {
				q := p.Spec.Containers[0].Resources.Requests[clusterdesc.GPUResourceName]
				perNode[p.Spec.NodeName] += q.Value()
			}
		}
		for n, g := range perNode {
			if g > 8 {
				t.Fatalf("%s: node %s was given %d GPUs of its 8", stage, n, g)
			}
		}
		bound := 0
		for _, members := range units {
			for _, p := range members {
				if node[p] != "" {
					bound++
				}
			}
		}
		t.Logf("%s: %d unit pods bound", stage, bound)
		for _, p := range stuck {
			if node[p] != "" {
				t.Fatalf("%s: pod %s of a unit that cannot be whole was bound to %s", stage, p, node[p])
			}
		}
		if !final {
			return
		}
		for u, members := range units {
			for _, p := range members {
				if node[p] == "" {
					t.Fatalf("%s: unit %s is not whole: %s unbound", stage, u, p)
				}
			}
		}
	}

	const rounds = 6
	for r := 0; r < rounds; r++ {
		// Each round brings a new 4P4D unit, and the stop comes within the
		// time its eight pods take to be placed, so it lands before,
		// during or after their Permit and binding.
		u := fmt.Sprintf("u%d", r)
		createPodGroup(t, cp, u, 8, 0)
		units[u] = createUnit(t, cp, u, 4, 4, 1, withLabels(pdaffinity.LabelPodGroup, u))
		// Half the rounds stop after a random delay (before or during
		// Permit), half once a random number of the unit's pods is bound
		// (while the others' bindings are in flight).
		w, err := cp.Client.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{LabelSelector: pdaffinity.LabelPodGroup + "=" + u})
		if err != nil {
			t.Fatal(err)
		}
		stop, err := cp.StartStoppableScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}, controlplane.SchedulerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var when string
		if r%2 == 0 {
			delay := time.Duration(rng.Int63n(int64(60 * time.Millisecond)))
			time.Sleep(delay)
			when = "after " + delay.Round(time.Millisecond).String()
		} else {
			k := 1 + rng.Intn(len(units[u])-1)
			bound := map[string]bool{}
			deadline := time.After(waitTimeout)
		watch:
			for len(bound) < k {
				select {
				case ev := <-w.ResultChan():
					if p, ok := ev.Object.(*v1.Pod); ok && p.Spec.NodeName != "" {
						bound[p.Name] = true
					}
				case <-deadline:
					break watch
				}
			}
			when = fmt.Sprintf("once %d of %d were bound", len(bound), len(units[u]))
		}
		stop()
		w.Stop()
		check(fmt.Sprintf("round %d, stopped %s", r, when), false)
	}

	// A last scheduler runs to the end.
	if _, err := cp.StartStoppableScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}, controlplane.SchedulerOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, members := range units {
		for _, p := range members {
			waitForBinding(t, cp, p)
		}
	}
	time.Sleep(2 * time.Second)
	check("after the last start", true)
}
