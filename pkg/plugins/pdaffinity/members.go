package pdaffinity

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	schedulingv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Pod labels that make a pod a member of a P/D group.
const (
	LabelRole  = "tandem.dev/role"
	LabelGroup = "tandem.dev/group"
	// LabelUnitSize makes the group one fixed xPyD unit of this many pods
	// (replica mode) when no PodGroup says so.
	LabelUnitSize = "tandem.dev/unit-size"
	// LabelPodGroup is the PodGroup label (scheduling.x-k8s.io): its pods
	// form one unit, placed all-or-nothing by Gang.
	LabelPodGroup = schedulingv1alpha1.PodGroupLabel
)

// Role is a pod's part in disaggregated serving.
type Role string

const (
	RolePrefill Role = "prefill"
	RoleDecode  Role = "decode"
)

func (r Role) opposite() Role {
	if r == RolePrefill {
		return RoleDecode
	}
	return RolePrefill
}

// Member is a pod's place in a P/D group.
type Member struct {
	Role Role
	// Group names the pods that exchange KV caches.
	Group string
	// Unit names the fixed xPyD unit the pod belongs to; empty in pool
	// mode, where prefill and decode pools scale apart.
	Unit string
	// UnitSize is the unit's pod count when a label gives it.
	UnitSize int
	// PodGroup is the scheduler-plugins PodGroup that sizes the unit, if any.
	PodGroup string
}

// MemberOf reads a pod's tandem role and group labels. It returns ok=false
// for a pod with neither label, and an error naming the label when they are
// malformed.
func MemberOf(pod *v1.Pod) (m Member, ok bool, err error) {
	return memberFrom(pod.Labels, tandemKeys)
}

// labelKeys are where one serving stack keeps a pod's role and group.
type labelKeys struct {
	preset string
	role   string
	group  string
	// roles maps the stack's role values to tandem's; values not listed are
	// not P/D roles (a router, a worker of another kind) and leave the pod
	// out of any group.
	roles map[string]Role
	// strict: a role value outside roles is an error, not "not a member".
	strict bool
	// unit, when set, names a label whose value tells the xPyD replica the
	// pod belongs to within the group.
	unit string
}

var tandemKeys = labelKeys{
	preset: "tandem", role: LabelRole, group: LabelGroup, strict: true,
	roles: map[string]Role{string(RolePrefill): RolePrefill, string(RoleDecode): RoleDecode},
}

// unitName is the unit as a user named it: the PodGroup, or the group.
func (m Member) unitName() string {
	if m.PodGroup != "" {
		return m.PodGroup
	}
	return m.Group
}

func memberFrom(labels map[string]string, k labelKeys) (Member, bool, error) {
	role, hasRole := labels[k.role]
	group, hasGroup := labels[k.group]
	switch {
	case !hasRole && !hasGroup:
		return Member{}, false, nil
	case !hasRole:
		if !k.strict {
			return Member{}, false, nil
		}
		return Member{}, true, fmt.Errorf("pod label %s=%q is set but %s is missing; set it to %s or %s", k.group, group, k.role, RolePrefill, RoleDecode)
	}
	r, known := k.roles[role]
	if !known {
		if !k.strict {
			return Member{}, false, nil
		}
		return Member{}, true, fmt.Errorf("pod label %s=%q is not one of %s, %s", k.role, role, RolePrefill, RoleDecode)
	}
	if group == "" {
		return Member{}, true, fmt.Errorf("pod label %s=%s needs a non-empty %s naming the pods it exchanges KV caches with", k.role, role, k.group)
	}
	m := Member{Role: r, Group: group}
	if k.unit != "" {
		if u := labels[k.unit]; u != "" {
			m.Unit = group + "/" + u
		}
	}
	return m, true, nil
}

// memberReader reads role and group from tandem's labels first, then from
// the enabled presets' labels, and the unit from a PodGroup or unit-size label.
type memberReader struct {
	presets []labelKeys
}

func newMemberReader(presetNames []string) (*memberReader, error) {
	r := &memberReader{presets: []labelKeys{tandemKeys}}
	for _, name := range presetNames {
		keys, ok := labelPresets[name]
		if !ok {
			return nil, fmt.Errorf("unknown label preset %q, want one of %v", name, LabelPresetNames())
		}
		r.presets = append(r.presets, keys...)
	}
	return r, nil
}

// read returns the pod's membership, ok=false when the pod is in no P/D
// group, or an error that names the malformed label.
func (r *memberReader) read(pod *v1.Pod) (Member, bool, error) {
	for _, k := range r.presets {
		m, ok, err := memberFrom(pod.Labels, k)
		if !ok {
			continue
		}
		if err != nil {
			return m, true, err
		}
		if pg := pod.Labels[LabelPodGroup]; pg != "" {
			m.PodGroup = pg
			m.Unit = "podgroup/" + pg
		}
		if v, ok := pod.Labels[LabelUnitSize]; ok {
			n, err := parseUnitSize(pod, v)
			if err != nil {
				return m, true, err
			}
			m.UnitSize = n
			if m.Unit == "" {
				m.Unit = "group/" + m.Group
			}
		}
		return m, true, nil
	}
	return Member{}, false, nil
}

// LabelPresetNames are the serving stacks whose pod labels PDAffinity reads.
func LabelPresetNames() []string {
	return sets.List(sets.KeySet(labelPresets))
}
