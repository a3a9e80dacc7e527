// Package nvlinktopo is the scheduler plugin that decides whether a node can
// give a GPU pod its GPUs the way the pod needs them — on one NVLink island,
// each with a GPUDirect-capable NIC beside it, outside MIG — from the node's
// NodeTopology and the scheduler's own record of what it placed since.
package nvlinktopo

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/cache"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/apis/config/validation"
	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	listers "github.com/tandem-sched/tandem/pkg/generated/listers/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/plugins/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Name is the plugin's name in the scheduler configuration.
const Name = "NVLinkTopo"

const preFilterStateKey fwk.StateKey = "PreFilter" + Name

// NodeTopologyResource is how the scheduler names NodeTopology in cluster events.
const NodeTopologyResource fwk.EventResource = "nodetopologies.v1alpha1." + topologyv1alpha1.GroupName

// Pod annotations that override the plugin's args for one pod.
const (
	// AnnotationIslandPolicy: Required, Preferred or Ignore.
	AnnotationIslandPolicy = "tandem.dev/nvlink-island"
	// AnnotationRDMA: "true" marks a pod as moving data over GPUDirect RDMA
	// even though it requests no RDMA resource.
	AnnotationRDMA = "tandem.dev/rdma"
	// AnnotationMIG: "true" lets a pod use MIG-partitioned GPUs.
	AnnotationMIG = "tandem.dev/mig"
)

var (
	_ framework.PreFilterPlugin   = &NVLinkTopo{}
	_ framework.FilterPlugin      = &NVLinkTopo{}
	_ framework.ScorePlugin       = &NVLinkTopo{}
	_ framework.ReservePlugin     = &NVLinkTopo{}
	_ framework.EnqueueExtensions = &NVLinkTopo{}
)

// NVLinkTopo filters and scores nodes by what their NodeTopology says about
// GPUs, NVLink islands and NICs.
type NVLinkTopo struct {
	args        config.NVLinkTopoArgs
	maxNICLevel topology.PCIeLevel
	weights     topology.ScoreWeights
	lister      listers.NodeTopologyLister
	clock       clock.PassiveClock
	ledger      *ledger
	compiled    compiledCache
	waiting     waitingPods
}

// NewFactory returns the plugin factory the scheduler registers. Every
// instance reads NodeTopology through src's informer and tells time by clk.
func NewFactory(src *topologysource.Source, clk clock.PassiveClock) frameworkruntime.PluginFactory {
	return func(ctx context.Context, obj runtime.Object, h framework.Handle) (framework.Plugin, error) {
		args, ok := obj.(*config.NVLinkTopoArgs)
		if !ok {
			return nil, fmt.Errorf("%s: want args of type NVLinkTopoArgs, got %T", Name, obj)
		}
		if err := validation.ValidateNVLinkTopoArgs(field.NewPath("pluginConfig").Key(Name).Child("args"), args); err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		informer, lister, err := src.Informer(ctx, h.KubeConfig())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		pl, err := New(*args, lister, clk)
		if err != nil {
			return nil, err
		}
		// The scheduler requeues pods on NodeTopology events from an
		// informer of its own, which may run ahead of this one; a pod
		// retried before this lister has the news would be rejected again
		// and wait for the next flush. So this informer, once its lister is
		// current, activates the pods waiting on a better topology too.
		logger := klog.FromContext(ctx).WithValues("plugin", Name)
		_, err = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj interface{}) {
				if nt, ok := obj.(*topologyv1alpha1.NodeTopology); ok && pl.topologyImproved(nil, nt) {
					pl.waiting.activate(logger, h)
				}
			},
			UpdateFunc: func(oldObj, newObj interface{}) {
				old, ok1 := oldObj.(*topologyv1alpha1.NodeTopology)
				nt, ok2 := newObj.(*topologyv1alpha1.NodeTopology)
				if ok1 && ok2 && pl.topologyImproved(old, nt) {
					pl.waiting.activate(logger, h)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("%s: watching NodeTopology: %w", Name, err)
		}
		// A deleted pod's GPUs are free again whether or not the report
		// has caught up with its placement.
		_, err = h.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj interface{}) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if pod, ok := obj.(*v1.Pod); ok {
					pl.ledger.remove(pod.UID)
					pl.waiting.remove(pod.UID)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("%s: watching pod deletions: %w", Name, err)
		}
		return pl, nil
	}
}

// New builds the plugin from validated args.
func New(args config.NVLinkTopoArgs, lister listers.NodeTopologyLister, clk clock.PassiveClock) (*NVLinkTopo, error) {
	level, err := topology.ParsePCIeLevel(string(args.MaxPCIeLevel))
	if err != nil {
		return nil, fmt.Errorf("%s: maxPCIeLevel: %w", Name, err)
	}
	w := args.ScoreWeights
	return &NVLinkTopo{
		args:        args,
		maxNICLevel: level,
		weights:     topology.ScoreWeights{IslandFit: int64(w.IslandFit), NICProximity: int64(w.NICProximity), NICBandwidth: int64(w.NICBandwidth)},
		lister:      lister,
		clock:       clk,
		ledger:      newLedger(),
		compiled:    compiledCache{byNode: map[string]compiledEntry{}},
		waiting:     waitingPods{pods: map[types.UID]*v1.Pod{}},
	}, nil
}

// Name returns the plugin's name.
func (pl *NVLinkTopo) Name() string { return Name }

type preFilterState struct {
	request topology.GPURequest
	// fits holds Filter's verdict per node (a topology.Fit) for Score, which
	// runs on the nodes Filter passed.
	fits sync.Map
}

// Clone returns the state itself: nothing in it depends on the pods on a
// node, which is what clones (preemption's dry runs) vary.
func (s *preFilterState) Clone() fwk.StateData { return s }

// PreFilter reads the pod's GPU request and its overrides once per cycle and
// skips pods without GPUs. A malformed override leaves the pod unschedulable
// with a message that names the annotation.
func (pl *NVLinkTopo) PreFilter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	req, err := pl.requestOf(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if req.Count == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	cycleState.Write(preFilterStateKey, &preFilterState{request: req})
	pl.waiting.add(pod)
	return nil, nil
}

// PreFilterExtensions returns nil: GPU accounting comes from the report and
// the ledger, not from the pods PreFilter would be told about.
func (pl *NVLinkTopo) PreFilterExtensions() framework.PreFilterExtensions { return nil }

func (pl *NVLinkTopo) requestOf(pod *v1.Pod) (topology.GPURequest, error) {
	requests := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	req := topology.GPURequest{
		Island:      topology.IslandPolicy(pl.args.IslandPolicy),
		MaxNICLevel: pl.maxNICLevel,
	}
	if q, ok := requests[v1.ResourceName(pl.args.GPUResourceName)]; ok {
		req.Count = int(q.Value())
	}
	for _, name := range pl.args.RDMAResourceNames {
		if q, ok := requests[v1.ResourceName(name)]; ok && !q.IsZero() {
			req.NeedRDMA = true
		}
	}
	if v, ok := pod.Annotations[AnnotationIslandPolicy]; ok {
		switch p := topology.IslandPolicy(v); p {
		case topology.IslandRequired, topology.IslandPreferred, topology.IslandIgnore:
			req.Island = p
		default:
			return req, fmt.Errorf("pod annotation %s=%q is not one of Required, Preferred, Ignore", AnnotationIslandPolicy, v)
		}
	}
	for key, target := range map[string]*bool{AnnotationRDMA: &req.NeedRDMA, AnnotationMIG: &req.AllowMIG} {
		v, ok := pod.Annotations[key]
		if !ok {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return req, fmt.Errorf("pod annotation %s=%q is not true or false", key, v)
		}
		*target = *target || b
	}
	return req, nil
}

// GPURequest is the number of GPUs the pod requests under resource name,
// counting init containers, sidecars and overhead as the kubelet does.
func GPURequest(pod *v1.Pod, name v1.ResourceName) int64 {
	q, ok := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})[name]
	if !ok {
		return 0
	}
	return q.Value()
}

// Reasons a node is rejected, as they appear in the pod's FailedScheduling event.
const (
	ReasonNoTopology    = "node has no NodeTopology (is tandem-agent running on it?)"
	reasonNeverReported = "NodeTopology has no heartbeat from tandem-agent"
)

// Filter rejects a node whose NodeTopology is missing or stale, or whose
// free GPUs cannot be arranged the way the pod needs.
func (pl *NVLinkTopo) Filter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s, err := readPreFilterState(cycleState)
	if err != nil {
		return fwk.AsStatus(err)
	}
	fit, unfit, status := pl.fit(nodeInfo.Node().Name, s.request)
	if status != nil {
		if status.Code() == fwk.UnschedulableAndUnresolvable && !needsTopology(s.request) {
			// A single GPU without RDMA needs nothing only the topology
			// can promise; the device plugin's count is enough.
			return nil
		}
		return status
	}
	if unfit != nil {
		code := fwk.UnschedulableAndUnresolvable
		if unfit.Resolvable {
			code = fwk.Unschedulable
		}
		klog.FromContext(ctx).V(5).Info("GPUs do not fit", "pod", klog.KObj(pod), "node", nodeInfo.Node().Name, "reason", unfit.Reason)
		return fwk.NewStatus(code, unfit.Reason)
	}
	s.fits.Store(nodeInfo.Node().Name, fit)
	return nil
}

// needsTopology says whether a request needs guarantees only a fresh
// NodeTopology can give: several GPUs on one NVLink island, or a NIC beside
// each GPU for GPUDirect RDMA.
func needsTopology(req topology.GPURequest) bool {
	return req.NeedRDMA || (req.Count > 1 && req.Island != topology.IslandIgnore)
}

// fit evaluates the request on a node: the fit, or why it does not fit, or
// a status when the node's topology cannot be trusted at all.
func (pl *NVLinkTopo) fit(node string, req topology.GPURequest) (topology.Fit, *topology.Unfit, *fwk.Status) {
	nt, err := pl.lister.Get(node)
	if apierrors.IsNotFound(err) {
		return topology.Fit{}, nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ReasonNoTopology)
	}
	if err != nil {
		return topology.Fit{}, nil, fwk.AsStatus(fmt.Errorf("reading NodeTopology %q: %w", node, err))
	}
	if reason := pl.staleReason(nt); reason != "" {
		return topology.Fit{}, nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reason)
	}
	gpus, err := pl.compiled.get(nt)
	if err != nil {
		return topology.Fit{}, nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("NodeTopology %s is malformed: %v", node, err))
	}
	used := gpus.NewUsed(nt.Status.GPUAllocations, nil)
	pl.ledger.markUsed(node, gpus, used, nt.Status.GPUAllocations)
	fit, unfit := gpus.Fit(req, used)
	return fit, unfit, nil
}

// staleReason says why nt is too old to trust, or "" when it is fresh.
func (pl *NVLinkTopo) staleReason(nt *topologyv1alpha1.NodeTopology) string {
	hb := nt.Status.LastHeartbeatTime
	if hb.IsZero() {
		return reasonNeverReported
	}
	age := pl.clock.Since(hb.Time)
	if max := pl.args.MaxTopologyAge.Duration; age > max {
		return fmt.Sprintf("NodeTopology is stale: last heartbeat %s ago, more than maxTopologyAge %s", age.Round(time.Second), max)
	}
	return ""
}

// Score prefers the node where the pod fills an NVLink island most tightly,
// then nearer NICs, then more NIC bandwidth per GPU, in [0, 100].
func (pl *NVLinkTopo) Score(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	s, err := readPreFilterState(cycleState)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	if fit, ok := s.fits.Load(nodeInfo.Node().Name); ok {
		return fit.(topology.Fit).Score(pl.weights), nil
	}
	fit, unfit, status := pl.fit(nodeInfo.Node().Name, s.request)
	if status != nil || unfit != nil {
		// Filter let the node through, so the picture changed in between.
		return 0, nil
	}
	return fit.Score(pl.weights), nil
}

// ScoreExtensions returns nil: scores are already in [0, 100].
func (pl *NVLinkTopo) ScoreExtensions() framework.ScoreExtensions { return nil }

// Reserve records the GPUs the pod is expected to get, so that pods placed
// before the agent's next report see them taken.
func (pl *NVLinkTopo) Reserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	s, err := readPreFilterState(cycleState)
	if err != nil {
		// PreFilter skipped the pod: it has no GPUs to record.
		return nil
	}
	fit, unfit, status := pl.fit(node, s.request)
	if status != nil || unfit != nil {
		msg := "topology changed since Filter"
		if unfit != nil {
			msg = unfit.Reason
		}
		return fwk.NewStatus(fwk.Unschedulable, msg)
	}
	pl.ledger.add(pod.UID, pod.Namespace+"/"+pod.Name, node, fit.GPUs)
	pl.waiting.remove(pod.UID)
	klog.FromContext(ctx).V(4).Info("Reserved GPUs", "pod", klog.KObj(pod), "node", node, "gpus", fit.GPUs)
	return nil
}

// Unreserve forgets the pod's GPUs when its placement is abandoned.
func (pl *NVLinkTopo) Unreserve(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, node string) {
	pl.ledger.remove(pod.UID)
}

func readPreFilterState(cycleState fwk.CycleState) (*preFilterState, error) {
	data, err := cycleState.Read(preFilterStateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %q from cycle state: %w", preFilterStateKey, err)
	}
	s, ok := data.(*preFilterState)
	if !ok {
		return nil, fmt.Errorf("%+v cannot be converted to nvlinktopo.preFilterState", data)
	}
	return s, nil
}

// compiledCache holds each node's compiled GPU model for the NodeTopology
// version it came from, so that Filter and Score stay O(GPUs).
type compiledCache struct {
	mu     sync.RWMutex
	byNode map[string]compiledEntry
}

type compiledEntry struct {
	resourceVersion string
	gpus            *topology.NodeGPUs
	err             error
}

func (c *compiledCache) get(nt *topologyv1alpha1.NodeTopology) (*topology.NodeGPUs, error) {
	c.mu.RLock()
	e, ok := c.byNode[nt.Name]
	c.mu.RUnlock()
	if ok && e.resourceVersion == nt.ResourceVersion && nt.ResourceVersion != "" {
		return e.gpus, e.err
	}
	gpus, err := topology.CompileNodeGPUs(&nt.Status)
	c.mu.Lock()
	c.byNode[nt.Name] = compiledEntry{resourceVersion: nt.ResourceVersion, gpus: gpus, err: err}
	c.mu.Unlock()
	return gpus, err
}

// EventsToRegister asks for a retry when a NodeTopology appears or changes
// (a heartbeat refreshes it, a report frees GPUs), when a pod holding GPUs
// goes away, and when a node is added.
func (pl *NVLinkTopo) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: NodeTopologyResource, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: pl.isSchedulableAfterTopologyChange},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}, QueueingHintFn: pl.isSchedulableAfterPodDeleted},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add}},
	}, nil
}

func (pl *NVLinkTopo) isSchedulableAfterPodDeleted(logger klog.Logger, pod *v1.Pod, oldObj, _ interface{}) (fwk.QueueingHint, error) {
	deleted, ok := oldObj.(*v1.Pod)
	if !ok {
		return fwk.Queue, fmt.Errorf("expected a *v1.Pod, got %T", oldObj)
	}
	if deleted.Spec.NodeName == "" || GPURequest(deleted, v1.ResourceName(pl.args.GPUResourceName)) == 0 {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("A pod holding GPUs was deleted", "pod", klog.KObj(pod), "deleted", klog.KObj(deleted))
	return fwk.Queue, nil
}

// isSchedulableAfterTopologyChange requeues on a NodeTopology event that
// could help: a new or newly fresh topology, or any change beyond the
// heartbeat. Heartbeats of an unchanged node, the bulk of all events, do not.
func (pl *NVLinkTopo) isSchedulableAfterTopologyChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	old, err := asNodeTopology(oldObj)
	if err != nil {
		return fwk.Queue, err
	}
	nt, err := asNodeTopology(newObj)
	if err != nil || nt == nil {
		return fwk.Queue, err
	}
	if pl.topologyImproved(old, nt) {
		logger.V(5).Info("NodeTopology changed in a way that may help", "pod", klog.KObj(pod), "node", nt.Name)
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// asNodeTopology reads an event object, typed or unstructured (the
// scheduler watches custom resources through a dynamic informer).
func asNodeTopology(obj interface{}) (*topologyv1alpha1.NodeTopology, error) {
	switch o := obj.(type) {
	case nil:
		return nil, nil
	case *topologyv1alpha1.NodeTopology:
		return o, nil
	case *unstructured.Unstructured:
		nt := &topologyv1alpha1.NodeTopology{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, nt); err != nil {
			return nil, fmt.Errorf("decoding NodeTopology %s: %w", o.GetName(), err)
		}
		return nt, nil
	}
	return nil, fmt.Errorf("expected a NodeTopology, got %T", obj)
}

// topologyImproved says whether going from old (nil when new) to nt could
// let a rejected pod fit.
func (pl *NVLinkTopo) topologyImproved(old, nt *topologyv1alpha1.NodeTopology) bool {
	if pl.staleReason(nt) != "" {
		return false
	}
	if old == nil || pl.staleReason(old) != "" {
		return true
	}
	a, b := old.Status.DeepCopy(), nt.Status.DeepCopy()
	a.LastHeartbeatTime, b.LastHeartbeatTime = metav1.Time{}, metav1.Time{}
	return !equality.Semantic.DeepEqual(a, b)
}

// waitingPods are the GPU pods that entered a scheduling cycle and have not
// been placed yet.
type waitingPods struct {
	mu   sync.Mutex
	pods map[types.UID]*v1.Pod
}

func (w *waitingPods) add(pod *v1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pods[pod.UID] = pod
}

func (w *waitingPods) remove(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.pods, uid)
}

func (w *waitingPods) activate(logger klog.Logger, activator framework.PodActivator) {
	w.mu.Lock()
	if len(w.pods) == 0 {
		w.mu.Unlock()
		return
	}
	pods := make(map[string]*v1.Pod, len(w.pods))
	for _, p := range w.pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	w.mu.Unlock()
	logger.V(4).Info("Activating pods waiting on NodeTopology", "count", len(pods))
	activator.Activate(logger, pods)
}
