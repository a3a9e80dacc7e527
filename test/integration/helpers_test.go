package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/scheduler"
)

const (
	namespace   = "default"
	waitTimeout = 60 * time.Second
)

// startCluster starts a control plane, creates the described GPU cluster in
// it, and runs the tandem scheduler from the shipped configuration.
func startCluster(t *testing.T, description string) *controlplane.ControlPlane {
	t.Helper()
	cp := createCluster(t, description)
	if err := cp.StartScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}); err != nil {
		t.Fatalf("starting the scheduler: %v", err)
	}
	return cp
}

// createCluster is startCluster without a scheduler: the nodes and their
// NodeTopology objects, for tests that start and stop schedulers themselves.
func createCluster(t *testing.T, description string) *controlplane.ControlPlane {
	t.Helper()
	desc, err := clusterdesc.Parse([]byte(description))
	if err != nil {
		t.Fatal(err)
	}
	cp := controlplane.StartControlPlane(t)
	if err := clusterdesc.Create(context.Background(), cp.Client, cp.Tandem, desc.Build(time.Now())); err != nil {
		t.Fatal(err)
	}
	return cp
}

type podOption func(*v1.Pod)

func withScheduler(name string) podOption { return func(p *v1.Pod) { p.Spec.SchedulerName = name } }

func withLabels(kv ...string) podOption {
	return func(p *v1.Pod) {
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

// createPod creates a pod for the tandem scheduler that requests gpus GPUs.
func createPod(t *testing.T, cp *controlplane.ControlPlane, name string, gpus int64, opts ...podOption) *v1.Pod {
	t.Helper()
	requests := v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}
	if gpus > 0 {
		requests[clusterdesc.GPUResourceName] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{}},
		Spec: v1.PodSpec{
			SchedulerName: scheduler.SchedulerName,
			Containers: []v1.Container{{
				Name: "engine", Image: "vllm/vllm-openai:v0.11.0",
				Resources: v1.ResourceRequirements{Requests: requests, Limits: limitsOf(requests)},
			}},
		},
	}
	for _, o := range opts {
		o(pod)
	}
	created, err := cp.Client.CoreV1().Pods(namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	return created
}

func limitsOf(requests v1.ResourceList) v1.ResourceList {
	limits := v1.ResourceList{}
	for name, q := range requests {
		if name == clusterdesc.GPUResourceName {
			limits[name] = q
		}
	}
	return limits
}

// waitForBinding waits until the pod is bound and returns its node.
func waitForBinding(t *testing.T, cp *controlplane.ControlPlane, name string) string {
	t.Helper()
	var node string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		pod, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		node = pod.Spec.NodeName
		return node != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s was not bound: %v; events: %s", name, err, eventsFor(cp, name))
	}
	return node
}

// waitForFailedScheduling waits for a FailedScheduling event on the pod whose
// message contains every one of want, and returns the message.
func waitForFailedScheduling(t *testing.T, cp *controlplane.ControlPlane, name string, want ...string) string {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		events, err := listEvents(ctx, cp, name)
		if err != nil {
			return false, err
		}
		for _, e := range events {
			if e.Reason != "FailedScheduling" {
				continue
			}
			last = e.Message
			if containsAll(e.Message, want) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no FailedScheduling event for pod %s containing %q; last one: %q", name, want, last)
	}
	return last
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func listEvents(ctx context.Context, cp *controlplane.ControlPlane, pod string) ([]v1.Event, error) {
	list, err := cp.Client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", pod).String(),
	})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func eventsFor(cp *controlplane.ControlPlane, pod string) string {
	events, err := listEvents(context.Background(), cp, pod)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\n  %s %s: %s", e.Type, e.Reason, e.Message)
	}
	return b.String()
}
