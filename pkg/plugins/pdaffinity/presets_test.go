package pdaffinity

import (
	"testing"

	"github.com/stretchr/testify/require"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/tandem-sched/tandem/apis/config"
)

// Labels as each stack's controller sets them on its engine pods.
var (
	lwsSlice = func(role, slice string) map[string]string {
		return map[string]string{
			"disaggregatedset.x-k8s.io/name": "ds", "disaggregatedset.x-k8s.io/role": role, "disaggregatedset.x-k8s.io/slice": slice,
			"leaderworkerset.sigs.k8s.io/name": "ds-" + slice + "-" + role, "leaderworkerset.sigs.k8s.io/worker-index": "0",
		}
	}
	withLabels = func(base map[string]string, more map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range more {
			out[k] = v
		}
		return out
	}
	groveDynamo = func(role, gang string) map[string]string {
		return map[string]string{
			"nvidia.com/dynamo-graph-deployment-name": "graph", "nvidia.com/dynamo-component-type": role,
			"nvidia.com/dynamo-namespace": "default-graph", "app.kubernetes.io/part-of": "graph",
			"app.kubernetes.io/managed-by": "grove-operator", "grove.io/podclique": "graph-0-" + role,
			"grove.io/podcliqueset-replica-index": "0", "grove.io/podclique-pod-index": "0",
			LabelGrovePodGang: gang,
		}
	}
)

func TestPresetsFallBackToTheirRoutersGrouping(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   Member
	}{
		{name: "llm-d role without model: the namespace's pool",
			labels: map[string]string{"llm-d.ai/role": "prefill", "llm-d.ai/inferenceServing": "true"},
			want:   Member{Role: RolePrefill, Group: "llm-d:namespace"}},
		{name: "llm-d empty model",
			labels: map[string]string{"llm-d.ai/role": "decode", "llm-d.ai/model": ""},
			want:   Member{Role: RoleDecode, Group: "llm-d:namespace"}},
		{name: "AIBrix RoleSet without StormService: the RoleSet is group and unit",
			labels: map[string]string{"storm-service-name": "", "roleset-name": "rs-a", "role-name": "decode"},
			want:   Member{Role: RoleDecode, Group: "aibrix:roleset/rs-a", Unit: "aibrix:roleset/rs-a/rs-a"}},
		{name: "AIBrix role with neither name: the namespace",
			labels: map[string]string{"role-name": "prefill"},
			want:   Member{Role: RolePrefill, Group: "aibrix:namespace"}},
		{name: "LWS without the set's name",
			labels: map[string]string{"disaggregatedset.x-k8s.io/role": "prefill", "disaggregatedset.x-k8s.io/slice": "0"},
			want:   Member{Role: RolePrefill, Group: "lws:namespace", Unit: "lws:namespace/0"}},
		{name: "Dynamo without the graph's name",
			labels: map[string]string{"nvidia.com/dynamo-component-type": "prefill"},
			want:   Member{Role: RolePrefill, Group: "dynamo:namespace"}},
		{name: "Dynamo legacy worker without the graph's name",
			labels: map[string]string{"nvidia.com/dynamo-component-type": "worker", "nvidia.com/dynamo-sub-component-type": "decode"},
			want:   Member{Role: RoleDecode, Group: "dynamo:namespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := newTestPlugin(t, nil)
			pod := st.MakePod().Namespace("ns").Name("p").Labels(tc.labels).Obj()
			m, ok, err := pl.members.read(pod)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, tc.want, m)
			// Logged once per group, not once per read.
			_, logged := pl.members.logged.Load("ns/" + tc.want.Group)
			require.True(t, logged)
			m2, _, _ := pl.members.read(pod)
			require.Equal(t, m, m2)
		})
	}

	// Tandem's own labels stay strict.
	pl := newTestPlugin(t, nil)
	_, ok, err := pl.members.read(st.MakePod().Labels(map[string]string{LabelRole: "prefill", "llm-d.ai/model": "m"}).Obj())
	require.True(t, ok)
	require.EqualError(t, err, "pod label tandem.dev/role=prefill needs a non-empty tandem.dev/group naming the pods it exchanges KV caches with")
	// A fallback group never equals a group a label can name.
	m, _, _ := pl.members.read(st.MakePod().Labels(map[string]string{"llm-d.ai/role": "prefill", "llm-d.ai/model": "llm-d-namespace"}).Obj())
	require.Equal(t, "llm-d-namespace", m.Group)
}

func TestPresetPrecedenceFinestGroupingIsTheUnit(t *testing.T) {
	llmd := func(role string) map[string]string {
		return map[string]string{"llm-d.ai/role": role, "llm-d.ai/model": "llama-3-70b", "llm-d.ai/inferenceServing": "true"}
	}
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		presets []string
		want    Member
	}{
		{name: "llm-d on an LWS DisaggregatedSet: the slice is the unit",
			labels: withLabels(llmd("prefill"), lwsSlice("prefill", "1")),
			want:   Member{Role: RolePrefill, Group: "ds", Unit: "ds/1"}},
		{name: "llm-d listed before lws: the slice still wins",
			labels: withLabels(llmd("decode"), lwsSlice("decode", "0")), presets: []string{"llm-d", "lws"},
			want: Member{Role: RoleDecode, Group: "ds", Unit: "ds/0"}},
		{name: "llm-d without model on LWS: the slice",
			labels: withLabels(map[string]string{"llm-d.ai/role": "decode"}, lwsSlice("decode", "2")),
			want:   Member{Role: RoleDecode, Group: "ds", Unit: "ds/2"}},
		{name: "without a unit label the named group is the pool, not a fallback",
			labels: map[string]string{"llm-d.ai/role": "decode", "nvidia.com/dynamo-component-type": "decode", "nvidia.com/dynamo-graph-deployment-name": "graph"},
			want:   Member{Role: RoleDecode, Group: "graph"}},
		{name: "a PodGroup beats the slice",
			labels: withLabels(withLabels(llmd("prefill"), lwsSlice("prefill", "1")), map[string]string{LabelPodGroup: "pg-1"}),
			want:   Member{Role: RolePrefill, Group: "ds", Unit: "podgroup/pg-1", PodGroup: "pg-1"}},
		{name: "llm-d on an AIBrix StormService: the RoleSet is the unit",
			labels: withLabels(llmd("decode"), map[string]string{"storm-service-name": "svc", "roleset-name": "svc-rs-0", "role-name": "decode"}),
			want:   Member{Role: RoleDecode, Group: "svc", Unit: "svc/svc-rs-0"}},
		{name: "tandem labels win over a slice",
			labels: withLabels(lwsSlice("prefill", "1"), map[string]string{LabelRole: "decode", LabelGroup: "mine"}),
			want:   Member{Role: RoleDecode, Group: "mine"}},
		{name: "Dynamo on Grove: the PodGang is the unit",
			labels: groveDynamo("prefill", "graph-0"),
			want:   Member{Role: RolePrefill, Group: "graph", Unit: "graph/graph-0"}},
		{name: "Dynamo on Grove, scaled PodGang: joins the replica it extends",
			labels: withLabels(groveDynamo("decode", "graph-0-decode-sg-1"), map[string]string{LabelGroveBasePodGang: "graph-0"}),
			want:   Member{Role: RoleDecode, Group: "graph", Unit: "graph/graph-0"}},
		{name: "Dynamo on Grove, legacy worker type",
			labels: withLabels(groveDynamo("worker", "graph-1"), map[string]string{"nvidia.com/dynamo-sub-component-type": "prefill"}),
			want:   Member{Role: RolePrefill, Group: "graph", Unit: "graph/graph-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := newTestPlugin(t, func(a *config.PDAffinityArgs) {
				if tc.presets != nil {
					a.LabelPresets = tc.presets
				}
			})
			m, ok, err := pl.members.read(st.MakePod().Labels(tc.labels).Obj())
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, tc.want, m)
		})
	}

	// Grove frontends and planners carry Dynamo's non-P/D component types
	// and the PodGang: no member, the PodGang does not make one.
	pl := newTestPlugin(t, nil)
	_, ok, err := pl.members.read(st.MakePod().Labels(groveDynamo("frontend", "graph-0")).Obj())
	require.NoError(t, err)
	require.False(t, ok)
	// Grove alone names no role: not a member.
	_, ok, _ = pl.members.read(st.MakePod().Labels(map[string]string{LabelGrovePodGang: "pcs-0", "grove.io/podclique": "pcs-0-prefill"}).Obj())
	require.False(t, ok)
}
