// Package nvlinktopo is the scheduler plugin that decides whether a node can
// host a GPU pod's GPUs the way the pod needs them, from the node's
// NodeTopology.
package nvlinktopo

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
)

// Name is the plugin's name in the scheduler configuration.
const Name = "NVLinkTopo"

const preFilterStateKey fwk.StateKey = "PreFilter" + Name

// NodeTopologyResource is how the scheduler names NodeTopology in cluster events.
const NodeTopologyResource fwk.EventResource = "nodetopologies.v1alpha1." + topologyv1alpha1.GroupName

var (
	_ framework.PreFilterPlugin   = &NVLinkTopo{}
	_ framework.FilterPlugin      = &NVLinkTopo{}
	_ framework.EnqueueExtensions = &NVLinkTopo{}
)

// NVLinkTopo filters nodes by what their NodeTopology says about GPUs.
type NVLinkTopo struct {
	args   config.NVLinkTopoArgs
	lister listers.NodeTopologyLister
	clock  clock.PassiveClock
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
		lister, err := src.Lister(ctx, h.KubeConfig())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		return New(*args, lister, clk), nil
	}
}

// New builds the plugin from validated args.
func New(args config.NVLinkTopoArgs, lister listers.NodeTopologyLister, clk clock.PassiveClock) *NVLinkTopo {
	return &NVLinkTopo{args: args, lister: lister, clock: clk}
}

// Name returns the plugin's name.
func (pl *NVLinkTopo) Name() string { return Name }

type preFilterState struct {
	// gpus is the number of GPUs the pod requests.
	gpus int64
}

// Clone returns the state itself: it does not change with the pods on a node.
func (s *preFilterState) Clone() fwk.StateData { return s }

// PreFilter reads the pod's GPU request once per cycle and skips pods
// without one.
func (pl *NVLinkTopo) PreFilter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	gpus := GPURequest(pod, v1.ResourceName(pl.args.GPUResourceName))
	if gpus == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	cycleState.Write(preFilterStateKey, &preFilterState{gpus: gpus})
	return nil, nil
}

// PreFilterExtensions returns nil: the state does not depend on other pods.
func (pl *NVLinkTopo) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// GPURequest is the number of GPUs the pod requests under resource name,
// counting init containers, sidecars and overhead as the kubelet does.
func GPURequest(pod *v1.Pod, name v1.ResourceName) int64 {
	q, ok := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})[name]
	if !ok {
		return 0
	}
	return q.Value()
}

// Filter rejects a node whose NodeTopology is missing or stale: without a
// fresh picture nothing can be promised about the pod's GPUs.
func (pl *NVLinkTopo) Filter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	if _, err := readPreFilterState(cycleState); err != nil {
		return fwk.AsStatus(err)
	}
	node := nodeInfo.Node()
	nt, err := pl.lister.Get(node.Name)
	if apierrors.IsNotFound(err) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ReasonNoTopology)
	}
	if err != nil {
		return fwk.AsStatus(fmt.Errorf("reading NodeTopology %q: %w", node.Name, err))
	}
	if reason := pl.staleReason(nt); reason != "" {
		klog.FromContext(ctx).V(4).Info("NodeTopology is stale", "pod", klog.KObj(pod), "node", klog.KObj(node), "reason", reason)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reason)
	}
	return nil
}

// Reasons a node is rejected, as they appear in the pod's FailedScheduling event.
const (
	ReasonNoTopology    = "node has no NodeTopology (is tandem-agent running on it?)"
	reasonNeverReported = "NodeTopology has no heartbeat from tandem-agent"
)

// staleReason says why nt is too old to trust, or "" when it is fresh.
func (pl *NVLinkTopo) staleReason(nt *topologyv1alpha1.NodeTopology) string {
	hb := nt.Status.LastHeartbeatTime
	if hb.IsZero() {
		return reasonNeverReported
	}
	age := pl.clock.Since(hb.Time)
	if max := pl.args.MaxTopologyAge.Duration; age > max {
		return fmt.Sprintf("NodeTopology is stale: last heartbeat %s ago, more than maxTopologyAge %s", age.Truncate(1e9), max)
	}
	return ""
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

// EventsToRegister asks for a retry when a NodeTopology appears or changes
// (a heartbeat refreshes it) and when a node is added.
func (pl *NVLinkTopo) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: NodeTopologyResource, ActionType: fwk.Add | fwk.Update}},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add}},
	}, nil
}
