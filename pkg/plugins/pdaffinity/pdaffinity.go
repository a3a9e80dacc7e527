// Package pdaffinity is the scheduler plugin that places each decode pod near
// the prefill pods it exchanges KV caches with, and each prefill near its
// decodes, over the topology levels.
package pdaffinity

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/apis/config/validation"
)

// Name is the plugin's name in the scheduler configuration.
const Name = "PDAffinity"

const preFilterStateKey fwk.StateKey = "PreFilter" + Name

// Pod labels that make a pod a member of a P/D group.
const (
	LabelRole  = "tandem.dev/role"
	LabelGroup = "tandem.dev/group"
)

// Role is a pod's part in disaggregated serving.
type Role string

const (
	RolePrefill Role = "prefill"
	RoleDecode  Role = "decode"
)

var (
	_ framework.PreFilterPlugin   = &PDAffinity{}
	_ framework.EnqueueExtensions = &PDAffinity{}
)

// PDAffinity places prefill and decode pods of one group close together.
type PDAffinity struct {
	args config.PDAffinityArgs
}

// New is the plugin factory the scheduler registers.
func New(_ context.Context, obj runtime.Object, _ framework.Handle) (framework.Plugin, error) {
	args, ok := obj.(*config.PDAffinityArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type PDAffinityArgs, got %T", Name, obj)
	}
	if err := validation.ValidatePDAffinityArgs(field.NewPath("pluginConfig").Key(Name).Child("args"), args); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	return &PDAffinity{args: *args}, nil
}

// Name returns the plugin's name.
func (pl *PDAffinity) Name() string { return Name }

// Member is a pod's role and group.
type Member struct {
	Role  Role
	Group string
}

// MemberOf reads a pod's role and group labels. It returns ok=false for a pod
// with neither label, and an error naming the label when they are malformed.
func MemberOf(pod *v1.Pod) (m Member, ok bool, err error) {
	role, hasRole := pod.Labels[LabelRole]
	group, hasGroup := pod.Labels[LabelGroup]
	switch {
	case !hasRole && !hasGroup:
		return Member{}, false, nil
	case !hasRole:
		return Member{}, true, fmt.Errorf("pod label %s=%q is set but %s is missing; set it to %s or %s", LabelGroup, group, LabelRole, RolePrefill, RoleDecode)
	case Role(role) != RolePrefill && Role(role) != RoleDecode:
		return Member{}, true, fmt.Errorf("pod label %s=%q is not one of %s, %s", LabelRole, role, RolePrefill, RoleDecode)
	case group == "":
		return Member{}, true, fmt.Errorf("pod label %s=%s needs a non-empty %s naming the pods it exchanges KV caches with", LabelRole, role, LabelGroup)
	}
	return Member{Role: Role(role), Group: group}, true, nil
}

type preFilterState struct {
	member Member
}

// Clone returns the state itself: it does not change with the pods on a node.
func (s *preFilterState) Clone() fwk.StateData { return s }

// PreFilter reads the pod's role and group once per cycle. Pods without them
// are skipped; pods with malformed ones stay unschedulable with a message
// that names the label, rather than being placed as if unlabelled.
func (pl *PDAffinity) PreFilter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	member, ok, err := MemberOf(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if err != nil {
		klog.FromContext(ctx).V(3).Info("Malformed P/D labels", "pod", klog.KObj(pod), "err", err)
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	cycleState.Write(preFilterStateKey, &preFilterState{member: member})
	return nil, nil
}

// PreFilterExtensions returns nil: the state does not depend on other pods.
func (pl *PDAffinity) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// EventsToRegister asks for a retry when a rejected pod's own labels change,
// which is the only way to fix a malformed role or group.
func (pl *PDAffinity) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.UpdatePodLabel}, QueueingHintFn: isSchedulableAfterOwnLabelChange},
	}, nil
}

func isSchedulableAfterOwnLabelChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj interface{}) (fwk.QueueingHint, error) {
	oldPod, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newPod.UID != pod.UID {
		return fwk.QueueSkip, nil
	}
	if oldPod != nil && oldPod.Labels[LabelRole] == newPod.Labels[LabelRole] && oldPod.Labels[LabelGroup] == newPod.Labels[LabelGroup] {
		return fwk.QueueSkip, nil
	}
	logger.V(5).Info("P/D labels of the rejected pod changed", "pod", klog.KObj(pod))
	return fwk.Queue, nil
}
