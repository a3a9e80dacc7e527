package pdaffinity

// labelPresets map the labels serving stacks already put on their engine
// pods onto role, group and unit. The keys come from each project's own code;
// a role value a stack uses for anything but prefill or decode (a router,
// an aggregated worker) leaves the pod out of any P/D group rather than
// making it unschedulable. A preset pod whose role is set but whose group
// label is missing or empty is not rejected: it is grouped the way that
// stack's router pairs such pods (fallback, logged once per group), because
// the stacks themselves do not require the label. docs/serving-stacks.md
// lists what each preset reads.
var labelPresets = map[string][]labelKeys{
	// AIBrix StormService (pkg/controller/constants/stormservice.go): the
	// service is storm-service-name, one xPyD unit is a RoleSet
	// (roleset-name), and role-name carries the role from the spec; AIBrix's
	// own P/D router pairs role-name=prefill with role-name=decode of the
	// same RoleSet. A RoleSet created without a StormService has an empty
	// storm-service-name: the RoleSet is then both the group and the unit,
	// which is what the router pairs. A pod with neither name falls back to
	// its namespace.
	"aibrix": {{
		preset: "aibrix", role: "role-name", group: "storm-service-name", units: []string{"roleset-name"},
		roles: map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
		fallback: func(ns string, labels map[string]string) (string, string, string) {
			if rs := labels["roleset-name"]; rs != "" {
				return "aibrix:roleset/" + rs, rs, "RoleSet without a StormService: the RoleSet is the group and the unit"
			}
			return namespaceGroup("aibrix")(ns, labels)
		},
	}},
	// LWS DisaggregatedSet (pkg/utils/disaggregatedset GenerateLabels): one
	// slice is a full copy of every role, i.e. one unit. Without the set's
	// name, the pods of the namespace form one pool.
	"lws": {{
		preset: "lws", role: "disaggregatedset.x-k8s.io/role", group: "disaggregatedset.x-k8s.io/name",
		units:    []string{"disaggregatedset.x-k8s.io/slice"},
		roles:    map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
		fallback: namespaceGroup("lws"),
	}},
	// NVIDIA Dynamo's operator (deploy/operator/internal/consts): newer
	// graphs put prefill|decode in the component type, older ones use
	// component type "worker" and the sub-component type. Dynamo's router
	// pairs workers of one graph (dynamo-graph-deployment-name); without it
	// the namespace is the group.
	//
	// On NVIDIA Grove (operator/api/common/labels.go) Dynamo's labels are
	// rendered onto the PodClique pods, and Grove adds grove.io/podgang: the
	// PodGang is one PodCliqueSet replica, the xPyD replica, so it is the
	// unit. A PodGang scaled beyond a scaling group's minAvailable carries
	// grove.io/base-podgang, the replica it extends: its pods join that unit
	// rather than forming a unit of one role. Only the grouping is read:
	// the PodGang's all-or-nothing is Grove's scheduler backend's, not Gang's.
	"dynamo": {
		{
			preset: "dynamo", role: "nvidia.com/dynamo-component-type", group: "nvidia.com/dynamo-graph-deployment-name",
			units:    groveUnits,
			roles:    map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
			fallback: namespaceGroup("dynamo"),
		},
		{
			preset: "dynamo", role: "nvidia.com/dynamo-sub-component-type", group: "nvidia.com/dynamo-graph-deployment-name",
			units:    groveUnits,
			roles:    map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
			fallback: namespaceGroup("dynamo"),
		},
	},
	// llm-d (llm-d-inference-scheduler's prefill and decode filters):
	// llm-d.ai/role alone decides the role; the router picks a decode and a
	// prefill among its InferencePool's endpoints. llm-d.ai/model is a guide
	// convention the llm-d-modelservice chart does not set: when present it
	// is the group, when absent the namespace is (an InferencePool is
	// namespaced; tandem does not read its selector). The aggregated role
	// (both) exchanges no KV cache.
	"llm-d": {{
		preset: "llm-d", role: "llm-d.ai/role", group: "llm-d.ai/model",
		roles:    map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
		fallback: namespaceGroup("llm-d"),
	}},
}

// Grove pod labels (grove.io, operator/api/common/labels.go).
const (
	LabelGrovePodGang     = "grove.io/podgang"
	LabelGroveBasePodGang = "grove.io/base-podgang"
)

// groveUnits: a scaled PodGang's pods belong to the replica they extend.
var groveUnits = []string{LabelGroveBasePodGang, LabelGrovePodGang}
