// Package gang is the scheduler plugin that places the pods of a PodGroup
// (scheduling.x-k8s.io/v1alpha1; pods labelled scheduling.x-k8s.io/pod-group)
// all-or-nothing: a placed pod waits at Permit until minMember pods of its
// group are placed, and a group that cannot be completed gives its places
// back. It keeps scheduler-plugins' Coscheduling semantics over the same
// API, with its bookkeeping indexed by PodGroup: no extension point lists a
// namespace's pods, and the queue's comparisons read no object.
package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/utils/clock"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/apis/config/validation"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
)

// Name is the plugin's name in the scheduler configuration.
const Name = "Gang"

// LabelPodGroup names the PodGroup, in the pod's namespace, a pod belongs to.
const LabelPodGroup = schedulingv1alpha1.PodGroupLabel

// podGroupIndex indexes the scheduler's pod informer by namespace/PodGroup,
// so that reading a group costs the group's size, not the namespace's.
const podGroupIndex = "tandem.dev/pod-group"

// handlerSyncTimeout bounds the wait for the PodGroup handler to have seen
// every PodGroup the informer already holds.
const handlerSyncTimeout = time.Minute

var (
	_ fwk.QueueSortPlugin   = &Gang{}
	_ fwk.PreFilterPlugin   = &Gang{}
	_ fwk.PostFilterPlugin  = &Gang{}
	_ fwk.ReservePlugin     = &Gang{}
	_ fwk.PermitPlugin      = &Gang{}
	_ fwk.EnqueueExtensions = &Gang{}
)

// Gang places a PodGroup's pods all-or-nothing.
type Gang struct {
	handle    fwk.Handle
	podGroups pglisters.PodGroupLister
	// pods is the scheduler's pod informer's indexer, with podGroupIndex.
	pods   cache.Indexer
	clock  clock.PassiveClock
	after  func(time.Duration, func())
	groups *groups
	// permitWait is the Permit wait when a PodGroup sets none; backoff keeps
	// a failed group out for this long (0: not at all); rejectShare is the
	// share of minMember still unplaced above which a failing pod rejects
	// its group's waiting pods.
	permitWait  time.Duration
	backoff     time.Duration
	rejectShare float64
}

// NewFactory returns the plugin factory the scheduler registers. PodGroups
// are read through src's one PodGroup informer, which PDAffinity shares.
func NewFactory(src *topologysource.Source, clk clock.PassiveClock) frameworkruntime.PluginFactory {
	return func(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		informer, lister, err := src.PodGroupInformer(ctx, h.KubeConfig())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		return NewWithPodGroups(ctx, obj, h, informer, lister, clk)
	}
}

// NewWithPodGroups builds the plugin over a started PodGroup informer and
// its lister, for a scheduler (or a test) that has its own; the args are
// validated.
func NewWithPodGroups(ctx context.Context, obj runtime.Object, h fwk.Handle, podGroupInformer cache.SharedIndexInformer, lister pglisters.PodGroupLister, clk clock.PassiveClock) (*Gang, error) {
	args, ok := obj.(*config.GangArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type GangArgs, got %T", Name, obj)
	}
	if err := validation.ValidateGangArgs(field.NewPath("pluginConfig").Key(Name).Child("args"), args); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	g := &Gang{
		handle:      h,
		podGroups:   lister,
		clock:       clk,
		after:       func(d time.Duration, f func()) { time.AfterFunc(d, f) },
		groups:      newGroups(),
		permitWait:  time.Duration(args.PermitWaitingTimeSeconds) * time.Second,
		backoff:     time.Duration(args.PodGroupBackoffSeconds) * time.Second,
		rejectShare: float64(args.PodGroupRejectPercentage) / 100,
	}
	if d, ok := clk.(clock.WithDelayedExecution); ok {
		g.after = func(t time.Duration, f func()) { d.AfterFunc(t, f) }
	}
	podInformer := h.SharedInformerFactory().Core().V1().Pods().Informer()
	if _, ok := podInformer.GetIndexer().GetIndexers()[podGroupIndex]; !ok {
		if err := podInformer.AddIndexers(cache.Indexers{podGroupIndex: indexByPodGroup}); err != nil {
			return nil, fmt.Errorf("%s: indexing pods by PodGroup: %w", Name, err)
		}
	}
	g.pods = podInformer.GetIndexer()
	if err := g.watchPods(podInformer); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	reg, err := g.watchPodGroups(podGroupInformer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	// Every PodGroup the informer holds has its creation time in the
	// queue's order before the first cycle.
	syncCtx, cancel := context.WithTimeout(ctx, handlerSyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), reg.HasSynced) {
		return nil, fmt.Errorf("%s: the PodGroup handler did not sync within %s", Name, handlerSyncTimeout)
	}
	return g, nil
}

// Name returns the plugin's name.
func (g *Gang) Name() string { return Name }

func indexByPodGroup(obj interface{}) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	k, ok := keyOf(pod)
	if !ok {
		return nil, nil
	}
	return []string{k.String()}, nil
}

// groupKey is a PodGroup's namespace and name.
type groupKey struct{ namespace, name string }

func (k groupKey) String() string { return k.namespace + "/" + k.name }

// keyOf is the pod's PodGroup, or ok=false for a pod in none.
func keyOf(pod *v1.Pod) (groupKey, bool) {
	name := pod.Labels[LabelPodGroup]
	if name == "" {
		return groupKey{}, false
	}
	return groupKey{pod.Namespace, name}, true
}

// podGroup reads the pod's PodGroup from the informer's cache (no copy; it
// is not modified).
func (g *Gang) podGroup(k groupKey) (*schedulingv1alpha1.PodGroup, error) {
	return g.podGroups.PodGroups(k.namespace).Get(k.name)
}

// members are the group's pods the scheduler's informer holds (terminated
// pods are not among them), O(group).
func (g *Gang) members(k groupKey) []*v1.Pod {
	objs, err := g.pods.ByIndex(podGroupIndex, k.String())
	if err != nil {
		return nil
	}
	pods := make([]*v1.Pod, 0, len(objs))
	for _, obj := range objs {
		if p, ok := obj.(*v1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods
}

// forWaiting calls f for each of the group's pods waiting at Permit, other
// than except.
func (g *Gang) forWaiting(k groupKey, except *v1.Pod, f func(fwk.WaitingPod)) {
	for _, p := range g.members(k) {
		if except != nil && p.UID == except.UID {
			continue
		}
		if wp := g.handle.GetWaitingPod(p.UID); wp != nil {
			f(wp)
		}
	}
}

// rejectWaiting rejects the group's pods waiting at Permit.
func (g *Gang) rejectWaiting(k groupKey, except *v1.Pod, msg string) int {
	n := 0
	g.forWaiting(k, except, func(wp fwk.WaitingPod) {
		wp.Reject(Name, msg)
		n++
	})
	return n
}

// allowWaiting lets the group's pods waiting at Permit go on to bind.
func (g *Gang) allowWaiting(k groupKey, except *v1.Pod) int {
	n := 0
	g.forWaiting(k, except, func(wp fwk.WaitingPod) {
		wp.Allow(Name)
		n++
	})
	return n
}

// pending are the group's pods not bound yet, keyed as the scheduling
// queue's Activate wants them.
func (g *Gang) pending(k groupKey, except *v1.Pod) map[string]*v1.Pod {
	out := map[string]*v1.Pod{}
	for _, p := range g.members(k) {
		if p.Spec.NodeName != "" || (except != nil && p.UID == except.UID) {
			continue
		}
		out[p.Namespace+"/"+p.Name] = p
	}
	return out
}

// markFailed records a failed attempt of the group: it sorts behind the
// queue's other pods of its priority from now, and starts its backoff.
func (g *Gang) markFailed(k groupKey) {
	now := g.clock.Now()
	g.groups.markFailed(k, now)
	g.groups.dropCapacity(k)
}

// backOff keeps the group out of scheduling for the configured backoff and
// retries its pending pods when it ends.
func (g *Gang) backOff(logger klog.Logger, k groupKey) {
	if g.backoff <= 0 {
		return
	}
	now := g.clock.Now()
	if g.groups.backOff(k, now, now.Add(g.backoff)) {
		g.after(g.backoff, func() { g.activate(logger, k) })
	}
}
