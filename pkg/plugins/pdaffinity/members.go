package pdaffinity

import (
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
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
	// strict: a role value outside roles, or a role without a group, is an
	// error rather than "not a member" or a fallback group. Only tandem's
	// own labels are strict.
	strict bool
	// units, when set, name labels whose value tells the xPyD replica the
	// pod belongs to within the group; the first one set wins.
	units []string
	// fallback names the group of a pod whose group label is missing or
	// empty, the way the stack's router pairs such pods; it returns a reason
	// for the log line. Fallback groups hold a character label values cannot
	// (':'), so they never collide with a group a label names.
	fallback func(ns string, labels map[string]string) (group, unit, reason string)
}

// namespaceGroup is the fallback of a stack whose router pairs prefill and
// decode pods within a namespaced pool: the pods of the stack in the pod's
// namespace form one group.
func namespaceGroup(preset string) func(string, map[string]string) (string, string, string) {
	return func(ns string, _ map[string]string) (string, string, string) {
		return preset + ":namespace", "", "grouped by namespace"
	}
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
	m, ok, _, err := presetMember("", labels, k)
	return m, ok, err
}

// presetMember reads one label scheme. reason is set when the group is a
// fallback rather than a label's value.
func presetMember(ns string, labels map[string]string, k labelKeys) (m Member, ok bool, reason string, err error) {
	role, hasRole := labels[k.role]
	group, hasGroup := labels[k.group]
	switch {
	case !hasRole && !hasGroup:
		return Member{}, false, "", nil
	case !hasRole:
		if !k.strict {
			return Member{}, false, "", nil
		}
		return Member{}, true, "", fmt.Errorf("pod label %s=%q is set but %s is missing; set it to %s or %s", k.group, group, k.role, RolePrefill, RoleDecode)
	}
	r, known := k.roles[role]
	if !known {
		if !k.strict {
			return Member{}, false, "", nil
		}
		return Member{}, true, "", fmt.Errorf("pod label %s=%q is not one of %s, %s", k.role, role, RolePrefill, RoleDecode)
	}
	unit := ""
	for _, key := range k.units {
		if unit = labels[key]; unit != "" {
			break
		}
	}
	if group == "" {
		if k.strict || k.fallback == nil {
			return Member{}, true, "", fmt.Errorf("pod label %s=%s needs a non-empty %s naming the pods it exchanges KV caches with", k.role, role, k.group)
		}
		var fu string
		group, fu, reason = k.fallback(ns, labels)
		if fu != "" {
			unit = fu
		}
	}
	m = Member{Role: r, Group: group}
	if unit != "" {
		m.Unit = group + "/" + unit
	}
	return m, true, reason, nil
}

// memberReader reads role and group from tandem's labels first, then from
// the enabled presets' labels, and the unit from a PodGroup or unit-size label.
type memberReader struct {
	presets []labelKeys
	// logged holds the fallback groups already named in a log line, so that
	// each is logged once rather than every cycle.
	logged sync.Map
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
//
// Tandem's own labels win whenever they are set. Otherwise every enabled
// preset that gives the pod a P/D role is read, and the finest grouping any
// of them names decides the unit: a PodGroup label, then a preset's unit
// label (an LWS slice, an AIBrix RoleSet, a Grove PodGang), then the group
// (with tandem.dev/unit-size). A unit's group is the group of the preset
// that named the unit, so a unit never spans groups; without a unit label
// the first preset that names a group decides the pool. The role is the
// first preset's, in the configured order.
func (r *memberReader) read(pod *v1.Pod) (Member, bool, error) {
	m, ok, err := memberFrom(pod.Labels, r.presets[0])
	if ok && err != nil {
		return m, true, err
	}
	if !ok {
		m, ok, err = r.readPresets(pod)
		if !ok || err != nil {
			return m, ok, err
		}
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

func (r *memberReader) readPresets(pod *v1.Pod) (Member, bool, error) {
	var first, pool, unit *Member
	var firstReason, poolReason, unitReason, firstPreset, unitPreset string
	for i := 1; i < len(r.presets); i++ {
		k := r.presets[i]
		m, ok, reason, err := presetMember(pod.Namespace, pod.Labels, k)
		if !ok {
			continue
		}
		if err != nil {
			return m, true, err
		}
		if first == nil {
			first, firstReason, firstPreset = &m, reason, k.preset
		}
		if pool == nil && reason == "" {
			pool, poolReason = &m, reason
		}
		if unit == nil && m.Unit != "" {
			unit, unitReason, unitPreset = &m, reason, k.preset
		}
	}
	if first == nil {
		return Member{}, false, nil
	}
	out, reason, preset := *first, firstReason, firstPreset
	switch {
	case unit != nil:
		out.Group, out.Unit, reason, preset = unit.Group, unit.Unit, unitReason, unitPreset
	case pool != nil:
		out.Group, reason = pool.Group, poolReason
	}
	if reason != "" {
		key := pod.Namespace + "/" + out.Group
		if _, seen := r.logged.LoadOrStore(key, struct{}{}); !seen {
			klog.Background().Info("P/D pod's labels name no group; grouping its stack's pods the way its router pairs them",
				"pod", klog.KObj(pod), "preset", preset, "group", out.Group, "unit", out.Unit, "rule", reason)
		}
	}
	return out, true, nil
}

// LabelPresetNames are the serving stacks whose pod labels PDAffinity reads.
func LabelPresetNames() []string {
	return sets.List(sets.KeySet(labelPresets))
}

// MemberReader reads pods' P/D membership the way PDAffinity does: tandem's
// labels first, then the given label presets' (nil for all of them), the
// unit from a PodGroup or unit-size label. Tools that show PDAffinity's
// groups use it, so that they group pods exactly as the scheduler does.
type MemberReader struct {
	r *memberReader
}

// NewMemberReader returns a reader for the named label presets; nil means
// every preset, as PDAffinity's default does.
func NewMemberReader(presetNames []string) (*MemberReader, error) {
	if presetNames == nil {
		presetNames = LabelPresetNames()
	}
	r, err := newMemberReader(presetNames)
	if err != nil {
		return nil, err
	}
	return &MemberReader{r: r}, nil
}

// Read returns the pod's membership, ok=false when the pod is in no P/D
// group, or an error that names the malformed label.
func (m *MemberReader) Read(pod *v1.Pod) (Member, bool, error) {
	return m.r.read(pod)
}
