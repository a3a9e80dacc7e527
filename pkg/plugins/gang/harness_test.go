package gang

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	tf "k8s.io/kubernetes/pkg/scheduler/testing/framework"
	testingclock "k8s.io/utils/clock/testing"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgfake "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned/fake"
	pginformers "sigs.k8s.io/scheduler-plugins/pkg/generated/informers/externalversions"

	"github.com/tandem-sched/tandem/apis/config"
	configv1 "github.com/tandem-sched/tandem/apis/config/v1"
)

const ns = "ns"

// activator records the pods the plugin activates.
type activator struct {
	mu    sync.Mutex
	calls []map[string]*v1.Pod
}

func (a *activator) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, pods)
}

// activated are the names of every pod activated so far.
func (a *activator) activated() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var names []string
	for _, c := range a.calls {
		for name := range c {
			names = append(names, name)
		}
	}
	return names
}

// harness runs Gang in a real framework (its waiting pods, its Permit
// timers) over fake clientsets whose informers deliver every object to the
// plugin's handlers, as the scheduler's do.
type harness struct {
	t         *testing.T
	ctx       context.Context
	cs        *k8sfake.Clientset
	pgcs      *pgfake.Clientset
	fw        framework.Framework
	gang      *Gang
	clock     *testingclock.FakeClock
	activator *activator
}

func defaultArgs() config.GangArgs {
	return config.GangArgs{
		PermitWaitingTimeSeconds: configv1.DefaultPermitWaitingTimeSeconds,
		PodGroupBackoffSeconds:   configv1.DefaultPodGroupBackoffSeconds,
		PodGroupRejectPercentage: configv1.DefaultPodGroupRejectPercentage,
	}
}

// newHarness starts the informers with objs already in the cluster: pods
// and PodGroups, as after a scheduler restart.
func newHarness(t *testing.T, args config.GangArgs, objs ...runtime.Object) *harness {
	t.Helper()
	schedmetrics.Register()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var pods, pgs []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*schedulingv1alpha1.PodGroup); ok {
			pgs = append(pgs, o)
		} else {
			pods = append(pods, o)
		}
	}
	h := &harness{
		t: t, ctx: ctx,
		cs:        k8sfake.NewClientset(pods...),
		pgcs:      pgfake.NewSimpleClientset(pgs...),
		clock:     testingclock.NewFakeClock(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)),
		activator: &activator{},
	}
	pgFactory := pginformers.NewSharedInformerFactory(h.pgcs, 0)
	pgInformer := pgFactory.Scheduling().V1alpha1().PodGroups()
	pgInformer.Informer()
	pgFactory.Start(ctx.Done())
	require.True(t, cache.WaitForCacheSync(ctx.Done(), pgInformer.Informer().HasSynced))

	factory := informers.NewSharedInformerFactory(h.cs, 0)
	newPlugin := func(ctx context.Context, _ runtime.Object, fh fwk.Handle) (fwk.Plugin, error) {
		g, err := NewWithPodGroups(ctx, &args, fh, pgInformer.Informer(), pgInformer.Lister(), h.clock)
		h.gang = g
		return g, err
	}
	fw, err := tf.NewFramework(ctx, []tf.RegisterPluginFunc{
		tf.RegisterPluginAsExtensions(Name, newPlugin, "QueueSort", "PreFilter", "Reserve", "Permit"),
		tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New),
	}, "tandem-scheduler",
		frameworkruntime.WithClientSet(h.cs),
		frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithWaitingPods(frameworkruntime.NewWaitingPodsMap()),
		frameworkruntime.WithPodActivator(h.activator),
	)
	require.NoError(t, err)
	h.fw = fw
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return h
}

func podGroup(name string, minMember int32, created time.Time) *schedulingv1alpha1.PodGroup {
	return &schedulingv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)},
		Spec:       schedulingv1alpha1.PodGroupSpec{MinMember: minMember},
	}
}

// member is a pod of PodGroup pg; its UID is its name.
func member(name, pg string) *st.PodWrapper {
	return st.MakePod().Namespace(ns).Name(name).UID(name).Label(LabelPodGroup, pg)
}

func (h *harness) createPod(pod *v1.Pod) {
	h.t.Helper()
	_, err := h.cs.CoreV1().Pods(pod.Namespace).Create(h.ctx, pod, metav1.CreateOptions{})
	require.NoError(h.t, err)
}

func (h *harness) createPodGroup(pg *schedulingv1alpha1.PodGroup) {
	h.t.Helper()
	_, err := h.pgcs.SchedulingV1alpha1().PodGroups(pg.Namespace).Create(h.ctx, pg, metav1.CreateOptions{})
	require.NoError(h.t, err)
	require.Eventually(h.t, func() bool { _, err := h.gang.podGroup(groupKey{pg.Namespace, pg.Name}); return err == nil }, 5*time.Second, 5*time.Millisecond)
}

// waitMembers waits for the pod informer's index to hold n pods of pg.
func (h *harness) waitMembers(pg string, n int) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return len(h.gang.members(groupKey{ns, pg})) == n }, 5*time.Second, 5*time.Millisecond,
		"PodGroup %s never had %d pods in the index", pg, n)
}

// waitAssigned waits for pg's assigned count to be n.
func (h *harness) waitAssigned(pg string, n int) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.gang.groups.assignedCount(groupKey{ns, pg}) == n }, 5*time.Second, 5*time.Millisecond,
		"PodGroup %s: assigned %d, want %d", pg, h.gang.groups.assignedCount(groupKey{ns, pg}), n)
}

// newState is a cycle state as the scheduler makes one, with the pods to
// activate at the end of the cycle.
func newState() (*framework.CycleState, *framework.PodsToActivate) {
	state := framework.NewCycleState()
	toActivate := framework.NewPodsToActivate()
	state.Write(framework.PodsToActivateKey, toActivate)
	return state, toActivate
}

// place reserves the pod on a node and runs Permit, as a scheduling cycle
// that found a node does; it returns Permit's status and the pods the cycle
// activates.
func (h *harness) place(pod *v1.Pod) (*fwk.Status, []string) {
	h.t.Helper()
	state, toActivate := newState()
	require.True(h.t, h.fw.RunReservePluginsReserve(h.ctx, state, pod, "node").IsSuccess())
	// The scheduling cycle adds a pod Permit holds to the waiting pods.
	waits, s := h.fw.RunPermitPlugins(h.ctx, state, pod, "node")
	if s.IsWait() {
		h.fw.AddWaitingPod(pod, waits)
	}
	var names []string
	for name := range toActivate.Map {
		names = append(names, name)
	}
	return s, names
}

// waitOnPermit is the binding cycle's wait for a pod that Permit held.
type permitResult struct{ ch chan *fwk.Status }

func (h *harness) waitOnPermit(pod *v1.Pod) permitResult {
	r := permitResult{ch: make(chan *fwk.Status, 1)}
	go func() { r.ch <- h.fw.WaitOnPermit(h.ctx, pod) }()
	return r
}

func (r permitResult) get(t *testing.T) *fwk.Status {
	t.Helper()
	select {
	case s := <-r.ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the pod is still waiting at Permit")
		return nil
	}
}

func (r permitResult) stillWaiting(t *testing.T) {
	t.Helper()
	select {
	case s := <-r.ch:
		t.Fatalf("the pod left Permit with %v; want it waiting", s)
	case <-time.After(100 * time.Millisecond):
	}
}

func (h *harness) waiting(uid types.UID) bool {
	return h.fw.GetWaitingPod(uid) != nil
}
