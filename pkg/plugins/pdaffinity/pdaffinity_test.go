package pdaffinity

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/tandem-sched/tandem/apis/config"
)

func TestMemberOf(t *testing.T) {
	tests := []struct {
		name     string
		labels   map[string]string
		want     Member
		wantOK   bool
		wantErrs []string
	}{
		{
			name:   "no labels",
			wantOK: false,
		},
		{
			name:   "only unrelated labels",
			labels: map[string]string{"app": "vllm"},
			wantOK: false,
		},
		{
			name:   "prefill with group",
			labels: map[string]string{LabelRole: "prefill", LabelGroup: "llama-70b"},
			want:   Member{Role: RolePrefill, Group: "llama-70b"},
			wantOK: true,
		},
		{
			name:   "decode with group",
			labels: map[string]string{LabelRole: "decode", LabelGroup: "llama-70b", "app": "vllm"},
			want:   Member{Role: RoleDecode, Group: "llama-70b"},
			wantOK: true,
		},
		{
			name:     "unknown role",
			labels:   map[string]string{LabelRole: "worker", LabelGroup: "g"},
			wantOK:   true,
			wantErrs: []string{`tandem.dev/role="worker"`, "prefill", "decode"},
		},
		{
			name:     "role is case sensitive",
			labels:   map[string]string{LabelRole: "Prefill", LabelGroup: "g"},
			wantOK:   true,
			wantErrs: []string{`tandem.dev/role="Prefill"`},
		},
		{
			name:     "role without group",
			labels:   map[string]string{LabelRole: "prefill"},
			wantOK:   true,
			wantErrs: []string{"tandem.dev/role=prefill", "non-empty tandem.dev/group"},
		},
		{
			name:     "group without role",
			labels:   map[string]string{LabelGroup: "g"},
			wantOK:   true,
			wantErrs: []string{`tandem.dev/group="g"`, "tandem.dev/role is missing"},
		},
		{
			name:     "empty group",
			labels:   map[string]string{LabelRole: "decode", LabelGroup: ""},
			wantOK:   true,
			wantErrs: []string{"tandem.dev/role=decode", "non-empty tandem.dev/group"},
		},
		{
			name:     "empty role",
			labels:   map[string]string{LabelRole: "", LabelGroup: "g"},
			wantOK:   true,
			wantErrs: []string{`tandem.dev/role=""`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := st.MakePod().Name("p").Labels(tt.labels).Obj()
			got, ok, err := MemberOf(pod)
			require.Equal(t, tt.wantOK, ok)
			if len(tt.wantErrs) > 0 {
				require.Error(t, err)
				for _, want := range tt.wantErrs {
					require.ErrorContains(t, err, want)
				}
				require.Equal(t, Member{}, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestPreFilter(t *testing.T) {
	tests := []struct {
		name        string
		labels      map[string]string
		wantCode    fwk.Code
		wantMessage string
		wantMember  *Member
	}{
		{
			name:     "pod without labels is skipped",
			wantCode: fwk.Skip,
		},
		{
			name:        "malformed labels are unresolvable",
			labels:      map[string]string{LabelRole: "worker", LabelGroup: "g"},
			wantCode:    fwk.UnschedulableAndUnresolvable,
			wantMessage: `pod label tandem.dev/role="worker" is not one of prefill, decode`,
		},
		{
			name:        "group without role is unresolvable",
			labels:      map[string]string{LabelGroup: "g"},
			wantCode:    fwk.UnschedulableAndUnresolvable,
			wantMessage: `pod label tandem.dev/group="g" is set but tandem.dev/role is missing; set it to prefill or decode`,
		},
		{
			name:       "prefill",
			labels:     map[string]string{LabelRole: "prefill", LabelGroup: "g"},
			wantCode:   fwk.Success,
			wantMember: &Member{Role: RolePrefill, Group: "g"},
		},
		{
			name:       "decode",
			labels:     map[string]string{LabelRole: "decode", LabelGroup: "g"},
			wantCode:   fwk.Success,
			wantMember: &Member{Role: RoleDecode, Group: "g"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := newTestPlugin(t, nil)
			pod := st.MakePod().Name("p").Namespace("default").Labels(tt.labels).Obj()
			state := framework.NewCycleState()
			res, status := pl.PreFilter(context.Background(), state, pod, nil)
			require.Nil(t, res)
			require.Equal(t, tt.wantCode, status.Code(), status.Message())

			data, err := state.Read(preFilterStateKey)
			if tt.wantMember == nil {
				require.Error(t, err, "no state may be written for a pod that is not a member")
			} else {
				require.NoError(t, err)
				s, ok := data.(*preFilterState)
				require.True(t, ok)
				require.Equal(t, *tt.wantMember, s.member)
			}
			if tt.wantCode == fwk.UnschedulableAndUnresolvable {
				_, _, memberErr := MemberOf(pod)
				require.Equal(t, memberErr.Error(), status.Message())
				require.Equal(t, tt.wantMessage, status.Message())
			}
		})
	}
}

func TestIsSchedulableAfterOwnLabelChange(t *testing.T) {
	rejected := st.MakePod().Name("p").UID("uid-p").Labels(map[string]string{LabelRole: "worker", LabelGroup: "g"}).Obj()
	withLabels := func(uid string, labels map[string]string) *v1.Pod {
		return st.MakePod().Name("p").UID(uid).Labels(labels).Obj()
	}
	tests := []struct {
		name     string
		old, new interface{}
		want     fwk.QueueingHint
		wantErr  bool
	}{
		{
			name: "own role fixed",
			old:  withLabels("uid-p", map[string]string{LabelRole: "worker", LabelGroup: "g"}),
			new:  withLabels("uid-p", map[string]string{LabelRole: "decode", LabelGroup: "g"}),
			want: fwk.Queue,
		},
		{
			name: "own group changed",
			old:  withLabels("uid-p", map[string]string{LabelRole: "decode", LabelGroup: ""}),
			new:  withLabels("uid-p", map[string]string{LabelRole: "decode", LabelGroup: "g2"}),
			want: fwk.Queue,
		},
		{
			name: "own role added",
			old:  withLabels("uid-p", map[string]string{LabelGroup: "g"}),
			new:  withLabels("uid-p", map[string]string{LabelRole: "prefill", LabelGroup: "g"}),
			want: fwk.Queue,
		},
		{
			name: "own labels removed",
			old:  withLabels("uid-p", map[string]string{LabelRole: "worker", LabelGroup: "g"}),
			new:  withLabels("uid-p", nil),
			want: fwk.Queue,
		},
		{
			name: "own unrelated label changed",
			old:  withLabels("uid-p", map[string]string{LabelRole: "worker", LabelGroup: "g", "app": "a"}),
			new:  withLabels("uid-p", map[string]string{LabelRole: "worker", LabelGroup: "g", "app": "b"}),
			want: fwk.QueueSkip,
		},
		{
			name: "another pod's role changed",
			old:  withLabels("uid-q", map[string]string{LabelRole: "worker", LabelGroup: "g"}),
			new:  withLabels("uid-q", map[string]string{LabelRole: "decode", LabelGroup: "g"}),
			want: fwk.QueueSkip,
		},
		{
			name:    "not a pod",
			old:     &v1.Node{},
			new:     &v1.Node{},
			want:    fwk.Queue,
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTestPlugin(t, nil).isSchedulableAfterOwnLabelChange(klog.Background(), rejected, tt.old, tt.new)
			if tt.wantErr {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestEventsToRegister(t *testing.T) {
	events, err := newTestPlugin(t, nil).EventsToRegister(context.Background())
	require.NoError(t, err)
	var got []fwk.ClusterEvent
	for _, e := range events {
		got = append(got, e.Event)
	}
	require.Contains(t, got, fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.UpdatePodLabel})
	require.Contains(t, got, fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add})
}

// newTestPlugin builds the plugin from defaulted args, changed by mutate.
func newTestPlugin(t *testing.T, mutate func(*config.PDAffinityArgs)) *PDAffinity {
	t.Helper()
	args := &config.PDAffinityArgs{LevelPreset: "tandem", SameNode: config.SameNodePrefer, GPUResourceName: "nvidia.com/gpu"}
	if mutate != nil {
		mutate(args)
	}
	pl, err := New(context.Background(), args, nil)
	require.NoError(t, err)
	return pl.(*PDAffinity)
}

func TestNew(t *testing.T) {
	tests := []struct {
		name     string
		args     runtime.Object
		wantErrs []string
	}{
		{
			name: "valid preset",
			args: &config.PDAffinityArgs{LevelPreset: "tandem", SameNode: config.SameNodePrefer, GPUResourceName: "nvidia.com/gpu"},
		},
		{
			name: "valid levels",
			args: &config.PDAffinityArgs{
				Levels:          []config.TopologyLevel{{Name: "leaf", NodeLabel: "example.com/leaf", Bandwidth: resource.MustParse("50G")}},
				SameNode:        config.SameNodeAllow,
				GPUResourceName: "nvidia.com/gpu",
			},
		},
		{
			name:     "invalid same-node policy",
			args:     &config.PDAffinityArgs{LevelPreset: "tandem", SameNode: "Never"},
			wantErrs: []string{"PDAffinity: ", `pluginConfig[PDAffinity].args.sameNode: Unsupported value: "Never"`},
		},
		{
			name:     "unknown preset",
			args:     &config.PDAffinityArgs{LevelPreset: "aks", SameNode: config.SameNodePrefer},
			wantErrs: []string{`pluginConfig[PDAffinity].args.levelPreset: Unsupported value: "aks"`},
		},
		{
			name: "zero bandwidth",
			args: &config.PDAffinityArgs{
				Levels:   []config.TopologyLevel{{Name: "leaf", NodeLabel: "example.com/leaf", Bandwidth: resource.MustParse("0")}},
				SameNode: config.SameNodeAllow,
			},
			wantErrs: []string{"pluginConfig[PDAffinity].args.levels[0].bandwidth"},
		},
		{
			name:     "wrong args type",
			args:     &config.NVLinkTopoArgs{},
			wantErrs: []string{"want args of type PDAffinityArgs", "*config.NVLinkTopoArgs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl, err := New(context.Background(), tt.args, nil)
			if len(tt.wantErrs) > 0 {
				require.Error(t, err)
				require.Nil(t, pl)
				for _, want := range tt.wantErrs {
					require.ErrorContains(t, err, want)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, Name, pl.Name())
			require.Equal(t, *tt.args.(*config.PDAffinityArgs), pl.(*PDAffinity).args)
		})
	}
}
