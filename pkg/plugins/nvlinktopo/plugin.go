// Package nvlinktopo is the scheduler plugin that decides whether a node can
// give a GPU pod its GPUs the way the pod needs them — on one NVLink island,
// each with a GPUDirect-capable NIC beside it, outside MIG — from the
// placement model: the node's NodeTopology report and the scheduler's own
// record of what it placed since.
package nvlinktopo

import (
	"context"
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/apis/config/validation"
	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/metrics"
	"github.com/tandem-sched/tandem/pkg/scheduler/activelease"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Name is the plugin's name in the scheduler configuration.
const Name = "NVLinkTopo"

const preFilterStateKey fwk.StateKey = "PreFilter" + Name

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
	_ fwk.PreFilterPlugin   = &NVLinkTopo{}
	_ fwk.FilterPlugin      = &NVLinkTopo{}
	_ fwk.PreScorePlugin    = &NVLinkTopo{}
	_ fwk.ScorePlugin       = &NVLinkTopo{}
	_ fwk.ReservePlugin     = &NVLinkTopo{}
	_ fwk.EnqueueExtensions = &NVLinkTopo{}
)

// NVLinkTopo filters and scores nodes by what the placement model says
// about their GPUs, NVLink islands and NICs.
type NVLinkTopo struct {
	args        config.NVLinkTopoArgs
	maxNICLevel topology.PCIeLevel
	weights     topology.ScoreWeights
	cluster     *topology.Cluster
	clock       clock.PassiveClock
	waiting     waitingPods
	// activeLease, when set, keeps this process from placing GPU pods
	// while another tandem scheduler is active.
	activeLease *activelease.Guard
	// dra reads the GPUs pods ask for through ResourceClaims; nil when
	// no DRA device class is configured.
	dra *topologysource.DRA
}

// NewFactory returns the plugin factory the scheduler registers. Every
// instance reads the placement model src keeps and tells time by clk.
func NewFactory(src *topologysource.Source, clk clock.PassiveClock) frameworkruntime.PluginFactory {
	return func(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		args, ok := obj.(*config.NVLinkTopoArgs)
		if !ok {
			return nil, fmt.Errorf("%s: want args of type NVLinkTopoArgs, got %T", Name, obj)
		}
		if err := validation.ValidateNVLinkTopoArgs(field.NewPath("pluginConfig").Key(Name).Child("args"), args); err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		cluster, err := src.Model(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		pl, err := New(*args, cluster, clk)
		if err != nil {
			return nil, err
		}
		if len(args.DRADeviceClassNames) > 0 {
			if pl.dra, err = src.DRA(ctx, h, topologysource.DRAConfig{DeviceClasses: args.DRADeviceClassNames, Driver: args.DRADriverName, RDMAClasses: args.DRARDMADeviceClassNames}); err != nil {
				return nil, fmt.Errorf("%s: %w", Name, err)
			}
		}
		pl.activeLease = src.ActiveLease(ctx, h.ClientSet(), clk)
		src.SetRequestReader(pl.requestOf, pl.Fresh)
		metrics.Register()
		metrics.SetModelState(pl.modelState(h.SharedInformerFactory().Core().V1().Nodes().Lister()))
		// Once the model has taken in a report that may help, the GPU
		// pods waiting for a placement are activated: this is how a
		// NodeTopology event requeues them (EventsToRegister).
		logger := klog.FromContext(ctx).WithValues("plugin", Name)
		src.OnReport(func(old, nt *topologyv1alpha1.NodeTopology) {
			pl.reportSkew(logger, h.EventRecorder(), old, nt)
			if pl.topologyImproved(old, nt) {
				pl.waiting.activate(logger, h)
			}
		})
		return pl, nil
	}
}

// New builds the plugin from validated args over a placement model.
func New(args config.NVLinkTopoArgs, cluster *topology.Cluster, clk clock.PassiveClock) (*NVLinkTopo, error) {
	level, err := topology.ParsePCIeLevel(string(args.MaxPCIeLevel))
	if err != nil {
		return nil, fmt.Errorf("%s: maxPCIeLevel: %w", Name, err)
	}
	w := args.ScoreWeights
	return &NVLinkTopo{
		args:        args,
		maxNICLevel: level,
		weights:     topology.ScoreWeights{IslandFit: int64(w.IslandFit), NICProximity: int64(w.NICProximity), NICBandwidth: int64(w.NICBandwidth)},
		cluster:     cluster,
		clock:       clk,
		waiting:     waitingPods{pods: map[types.UID]*v1.Pod{}},
	}, nil
}

// Name returns the plugin's name.
func (pl *NVLinkTopo) Name() string { return Name }

// requestOf is the pod's GPU request as PDAffinity plans it: a claim for
// all of a node's GPUs counts the most any node has.
func (pl *NVLinkTopo) requestOf(pod *v1.Pod) (topology.GPURequest, error) {
	req, dra, err := pl.podRequest(pod)
	if err != nil {
		return req, err
	}
	if dra.AllOfNode && pl.dra != nil {
		req.Count = min(req.Count+pl.dra.MaxNodeGPUs(), topologysource.MaxPodGPUs)
	}
	return req, nil
}

// podRequest reads the pod's GPU request: the extended resource's count
// plus what its unallocated ResourceClaims ask for by count. A claim for
// all of a node's GPUs is in dra.AllOfNode, to count per node.
func (pl *NVLinkTopo) podRequest(pod *v1.Pod) (req topology.GPURequest, dra topologysource.DRARequest, err error) {
	req, err = pl.deviceRequest(pod)
	if err != nil || pl.dra == nil || len(pod.Spec.ResourceClaims) == 0 {
		return req, dra, err
	}
	if dra, err = pl.dra.Request(pod); err != nil {
		return req, dra, err
	}
	// When all the pod's GPUs come from claims that ask by class and count
	// alone, the DynamicResources plugin's allocator takes the first free
	// GPUs in the node's ResourceSlice order, islands or not: the model
	// judges each node by that pick (no scheduler plugin can make the
	// allocator take others), so a node where it would split the claim
	// across NVLink islands is not chosen for it, by Filter or by
	// PDAffinity's planner.
	req.FirstFit = dra.FirstFit && len(dra.Claims) > 0 && req.Count == 0
	req.Count += dra.Count
	req.NeedRDMA = req.NeedRDMA || dra.RDMA
	if req.Count > topologysource.MaxPodGPUs {
		return req, dra, fmt.Errorf("pod %s/%s asks for %d GPUs, more than %d", pod.Namespace, pod.Name, req.Count, topologysource.MaxPodGPUs)
	}
	return req, dra, nil
}

func (pl *NVLinkTopo) deviceRequest(pod *v1.Pod) (topology.GPURequest, error) {
	requests := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	req := topology.GPURequest{
		Island:      topology.IslandPolicy(pl.args.IslandPolicy),
		MaxNICLevel: pl.maxNICLevel,
	}
	count, err := topologysource.GPUCount(pod, v1.ResourceName(pl.args.GPUResourceName))
	if err != nil {
		return req, err
	}
	req.Count = count
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
