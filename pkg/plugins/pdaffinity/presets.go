package pdaffinity

// labelPresets map the labels serving stacks already put on their engine
// pods onto role, group and unit. The keys come from each project's own code;
// a role value a stack uses for anything but prefill or decode (a router,
// an aggregated worker) leaves the pod out of any P/D group rather than
// making it unschedulable.
var labelPresets = map[string][]labelKeys{
	// AIBrix StormService (pkg/controller/constants/stormservice.go): the
	// service is storm-service-name, one xPyD unit is a RoleSet
	// (roleset-name), and role-name carries the role from the spec; AIBrix's
	// own P/D router pairs role-name=prefill with role-name=decode.
	"aibrix": {{
		preset: "aibrix", role: "role-name", group: "storm-service-name", unit: "roleset-name",
		roles: map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
	}},
	// LWS DisaggregatedSet (pkg/utils/disaggregatedset GenerateLabels): one
	// slice is a full copy of every role, i.e. one unit.
	"lws": {{
		preset: "lws", role: "disaggregatedset.x-k8s.io/role", group: "disaggregatedset.x-k8s.io/name",
		unit:  "disaggregatedset.x-k8s.io/slice",
		roles: map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
	}},
	// NVIDIA Dynamo's operator (deploy/operator/internal/consts): newer
	// graphs put prefill|decode in the component type, older ones use
	// component type "worker" and the sub-component type.
	"dynamo": {
		{
			preset: "dynamo", role: "nvidia.com/dynamo-component-type", group: "nvidia.com/dynamo-graph-deployment-name",
			roles: map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
		},
		{
			preset: "dynamo", role: "nvidia.com/dynamo-sub-component-type", group: "nvidia.com/dynamo-graph-deployment-name",
			roles: map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
		},
	},
	// llm-d (llm-d-inference-scheduler's role filter, llm-d-modelservice
	// chart): llm-d.ai/role, pools grouped by llm-d.ai/model. The
	// aggregated roles (prefill-decode, both) exchange no KV cache.
	"llm-d": {{
		preset: "llm-d", role: "llm-d.ai/role", group: "llm-d.ai/model",
		roles: map[string]Role{"prefill": RolePrefill, "decode": RoleDecode},
	}},
}
