package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
)

// The identities manifests/ creates, as the apiserver sees them.
const (
	agentNamespace   = "tandem-agent"
	schedulerSAUser  = "system:serviceaccount:tandem-system:tandem-scheduler"
	agentSAUser      = "system:serviceaccount:tandem-agent:tandem-agent"
	nodeNameExtraKey = "authentication.kubernetes.io/node-name"
)

var (
	schedulerSAGroups = []string{"system:serviceaccounts", "system:serviceaccounts:tandem-system", "system:authenticated"}
	agentSAGroups     = []string{"system:serviceaccounts", "system:serviceaccounts:tandem-agent", "system:authenticated"}
)

// TestManifests applies what `kubectl apply -k manifests/` applies to an
// empty cluster that authorizes with Node and RBAC, as a real one does, and
// checks what the manifests promise: the tested scheduler configuration is
// the shipped one, the pods meet their namespaces' Pod Security Standards,
// the overlays add only their privileges, and each service account may do
// what its component needs and nothing else.
func TestManifests(t *testing.T) {
	base := kustomizeBuild(t)
	readPCI := kustomizeBuild(t, "overlays", "read-pci-config")
	configure := kustomizeBuild(t, "overlays", "configure-gpudirect")
	lldp := kustomizeBuild(t, "overlays", "lldp")
	azure := kustomizeBuild(t, "overlays", "azure-nd")
	ibProbe := kustomizeBuild(t, "overlays", "infiniband-probe")
	monitor := kustomizeBuild(t, "overlays", "servicemonitor")
	examples := kustomizeBuild(t, "examples")

	cp := startAuthorizingControlPlane(t)
	ap := newManifestApplier(t, cp.Config)
	// A schema error, an unknown field or a dangling reference the apiserver
	// checks fails here.
	ap.apply(t, base)

	t.Run("ShipsTheSchedulerConfigTheTestsRun", func(t *testing.T) {
		want, err := os.ReadFile(controlplane.ShippedSchedulerConfig())
		if err != nil {
			t.Fatal(err)
		}
		cm := findObject(t, base, "ConfigMap", "tandem-system", "tandem-scheduler-config-")
		built, _, _ := unstructured.NestedString(cm.Object, "data", "scheduler-config.yaml")
		if built != string(want) {
			t.Errorf("ConfigMap %s holds a scheduler-config.yaml that differs from %s:\n%s", cm.GetName(), controlplane.ShippedSchedulerConfig(), built)
		}
		served, err := cp.Client.CoreV1().ConfigMaps("tandem-system").Get(context.Background(), cm.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if served.Data["scheduler-config.yaml"] != string(want) {
			t.Errorf("the apiserver's ConfigMap %s differs from %s", cm.GetName(), controlplane.ShippedSchedulerConfig())
		}

		deploy := &appsv1.Deployment{}
		fromUnstructured(t, findObject(t, base, "Deployment", "tandem-system", "tandem-scheduler"), deploy)
		spec := deploy.Spec.Template.Spec
		if got := ptr.Deref(deploy.Spec.Replicas, 0); got != 2 {
			t.Errorf("scheduler replicas = %d, want 2", got)
		}
		var mounted string
		for _, vol := range spec.Volumes {
			if vol.ConfigMap != nil {
				mounted = vol.ConfigMap.Name
			}
		}
		if mounted != cm.GetName() {
			t.Errorf("the Deployment mounts ConfigMap %q, want the generated %q", mounted, cm.GetName())
		}
		c := spec.Containers[0]
		if !slices.Contains(c.Args, "--config=/etc/tandem/scheduler-config.yaml") {
			t.Errorf("scheduler args %q do not name the mounted configuration", c.Args)
		}
		for name, probe := range map[string]*v1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Scheme != v1.URISchemeHTTPS || probe.HTTPGet.Port.IntValue() != 10259 {
				t.Errorf("%s probe %+v is not HTTPS on 10259", name, probe)
			}
		}
		if spec.PriorityClassName != "system-cluster-critical" {
			t.Errorf("scheduler priorityClassName %q, want system-cluster-critical", spec.PriorityClassName)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("scheduler container requests %v, want CPU and memory", c.Resources.Requests)
		}

		// The lease the configuration elects on is the one the Role names.
		var config struct {
			LeaderElection struct {
				LeaderElect       bool   `json:"leaderElect"`
				ResourceNamespace string `json:"resourceNamespace"`
				ResourceName      string `json:"resourceName"`
			} `json:"leaderElection"`
		}
		if err := yaml.Unmarshal(want, &config); err != nil {
			t.Fatal(err)
		}
		le := config.LeaderElection
		if !le.LeaderElect || le.ResourceNamespace != "tandem-system" || le.ResourceName != "tandem-scheduler" {
			t.Errorf("leader election %+v, want on, lease tandem-system/tandem-scheduler as the RBAC Role grants", le)
		}
	})

	t.Run("PodsMeetTheirNamespacesPodSecurity", func(t *testing.T) {
		ctx := context.Background()
		for ns, want := range map[string]string{"tandem-system": "restricted", agentNamespace: "privileged"} {
			got, err := cp.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if level := got.Labels["pod-security.kubernetes.io/enforce"]; level != want {
				t.Errorf("namespace %s enforces Pod Security %q, want %q", ns, level, want)
			}
		}
		// The PodSecurity admission plugin judges a pod made from each
		// template, in its own namespace.
		scheduler := podFromTemplate(t, findObject(t, base, "Deployment", "tandem-system", "tandem-scheduler"))
		if err := dryRunPod(cp, scheduler); err != nil {
			t.Errorf("the scheduler pod is refused in tandem-system (restricted): %v", err)
		}
		// ... and enforces: a hostPath pod is refused there.
		intruder := scheduler.DeepCopy()
		intruder.Name = "hostpath-probe"
		intruder.Spec.Volumes = append(intruder.Spec.Volumes, v1.Volume{Name: "host", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: "/"}}})
		if err := dryRunPod(cp, intruder); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Errorf("a hostPath pod in tandem-system: got %v, want a PodSecurity violation", err)
		}
		agent := podFromTemplate(t, findObject(t, base, "DaemonSet", agentNamespace, "tandem-agent"))
		if err := dryRunPod(cp, agent); err != nil {
			t.Errorf("the agent pod is refused in %s: %v", agentNamespace, err)
		}
		// The agent is baseline but for its hostPath volumes: judged in a
		// namespace that enforces baseline, nothing else is named.
		probeNS := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "baseline-probe", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}
		if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, probeNS, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		agent.Namespace = probeNS.Name
		err := dryRunPod(cp, agent)
		if err == nil || !strings.Contains(err.Error(), "hostPath volumes") {
			t.Fatalf("the agent pod under baseline: got %v, want only hostPath volumes refused", err)
		}
		for _, other := range []string{"privileged", "capabilities", "host namespaces", "hostPort", "seccomp", "sysctls", "proc mount"} {
			if strings.Contains(err.Error(), other) {
				t.Errorf("the agent pod breaks baseline beyond hostPath volumes (%s): %v", other, err)
			}
		}
	})

	t.Run("AgentIsUnprivilegedByDefault", func(t *testing.T) {
		ds := &appsv1.DaemonSet{}
		fromUnstructured(t, findObject(t, base, "DaemonSet", agentNamespace, "tandem-agent"), ds)
		spec := ds.Spec.Template.Spec
		c := spec.Containers[0]
		sc := c.SecurityContext
		if sc == nil || ptr.Deref(sc.Privileged, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) ||
			!ptr.Deref(sc.ReadOnlyRootFilesystem, false) || sc.Capabilities == nil ||
			!slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("agent security context %+v: want no privilege, no escalation, read-only root, all capabilities dropped", sc)
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Error("the agent shares a host namespace")
		}
		for _, m := range c.VolumeMounts {
			if hostPathVolume(spec, m.Name) != nil && !m.ReadOnly {
				t.Errorf("host volume %s is mounted writable", m.Name)
			}
		}
		if spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
			t.Errorf("agent nodeSelector %v does not select GPU nodes", spec.NodeSelector)
		}
		if !slices.ContainsFunc(spec.Tolerations, func(tol v1.Toleration) bool { return tol.Key == "nvidia.com/gpu" }) {
			t.Errorf("agent tolerations %v do not tolerate nvidia.com/gpu taints", spec.Tolerations)
		}
		if !slices.ContainsFunc(c.Env, func(e v1.EnvVar) bool {
			return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		}) {
			t.Error("NODE_NAME does not come from spec.nodeName")
		}
		// --driver-root is a host driver mount.
		root := flagValue(c.Args, "--driver-root")
		if !slices.ContainsFunc(c.VolumeMounts, func(m v1.VolumeMount) bool {
			return root == m.MountPath && hostPathVolume(spec, m.Name) != nil
		}) {
			t.Errorf("--driver-root=%q is not a host driver mount", root)
		}
		if spec.PriorityClassName != "system-node-critical" {
			t.Errorf("agent priorityClassName %q, want system-node-critical", spec.PriorityClassName)
		}
		for name, probe := range map[string]*v1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "health" {
				t.Errorf("agent %s probe %+v, want GET %s on the health port", name, probe, want)
			}
		}
		if addr := flagValue(c.Args, "--health-addr"); !slices.ContainsFunc(c.Ports, func(p v1.ContainerPort) bool {
			return p.Name == "health" && addr == fmt.Sprintf(":%d", p.ContainerPort)
		}) {
			t.Errorf("--health-addr=%q is not the health port %+v", addr, c.Ports)
		}
	})

	t.Run("OverlaysAddOnlyTheirPrivileges", func(t *testing.T) {
		baseDS := &appsv1.DaemonSet{}
		fromUnstructured(t, findObject(t, base, "DaemonSet", agentNamespace, "tandem-agent"), baseDS)
		baseC := baseDS.Spec.Template.Spec.Containers[0]
		for _, tc := range []struct {
			name      string
			objs      []*unstructured.Unstructured
			caps      []v1.Capability
			extraArgs []string
			writable  []string // host volumes mounted writable
		}{
			{"read-pci-config", readPCI, []v1.Capability{"SYS_ADMIN"}, nil, nil},
			{"configure-gpudirect", configure, []v1.Capability{"SYS_ADMIN", "SYS_MODULE"}, []string{"--configure-gpudirect"}, []string{"host-sys"}},
			{"lldp", lldp, nil, []string{"--leaf-sources=static,label,lldp"}, nil},
			{"azure-nd", azure, nil, []string{"--nccl-topo-file=/host/opt/microsoft/ndv5-topo.xml"}, nil},
		} {
			ds := &appsv1.DaemonSet{}
			fromUnstructured(t, findObject(t, tc.objs, "DaemonSet", agentNamespace, "tandem-agent"), ds)
			spec := ds.Spec.Template.Spec
			c := spec.Containers[0]
			sc := c.SecurityContext
			if ptr.Deref(sc.Privileged, false) || !slices.Equal(sc.Capabilities.Add, tc.caps) || !slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) {
				t.Errorf("%s: capabilities %+v privileged %v, want add %v to dropped ALL, not privileged", tc.name, sc.Capabilities, sc.Privileged, tc.caps)
			}
			if want := append(slices.Clone(baseC.Args), tc.extraArgs...); !slices.Equal(c.Args, want) {
				t.Errorf("%s: args %q, want %q", tc.name, c.Args, want)
			}
			for _, m := range c.VolumeMounts {
				if hostPathVolume(spec, m.Name) != nil && !m.ReadOnly != slices.Contains(tc.writable, m.Name) {
					t.Errorf("%s: host volume %s mounted readOnly=%v", tc.name, m.Name, m.ReadOnly)
				}
			}
			// The apiserver validates the template (CAP_SYS_ADMIN beside
			// allowPrivilegeEscalation: false is refused) and the agent's
			// namespace admits the pod.
			ap.apply(t, tc.objs)
			if err := dryRunPod(cp, podFromTemplate(t, findObject(t, tc.objs, "DaemonSet", agentNamespace, "tandem-agent"))); err != nil {
				t.Errorf("%s: the agent pod is refused: %v", tc.name, err)
			}
		}
		// The infiniband probe needs host device nodes, which only a
		// privileged container may open: it says so, and adds only that.
		ds := &appsv1.DaemonSet{}
		fromUnstructured(t, findObject(t, ibProbe, "DaemonSet", agentNamespace, "tandem-agent"), ds)
		c := ds.Spec.Template.Spec.Containers[0]
		if !ptr.Deref(c.SecurityContext.Privileged, false) || !slices.Equal(c.Args, append(slices.Clone(baseC.Args), "--enable-infiniband-probe", "--leaf-sources=static,label,infiniband")) {
			t.Errorf("infiniband-probe: privileged %v args %q", c.SecurityContext.Privileged, c.Args)
		}
		// Not applied: the test apiserver runs with privileged containers
		// disallowed (--allow-privileged=false).
		// Back to the default agent for the subtests that follow.
		ap.apply(t, base)
	})

	t.Run("MetricsServiceAndServiceMonitor", func(t *testing.T) {
		checkMetricsManifests(t, cp, ap, base, monitor)
	})

	t.Run("ExamplesApply", func(t *testing.T) {
		ap.apply(t, examples)
		var groups, engines int
		for _, obj := range examples {
			switch obj.GetKind() {
			case "PodGroup":
				groups++
			case "Deployment":
				d := &appsv1.Deployment{}
				fromUnstructured(t, obj, d)
				tmpl := d.Spec.Template
				engines++
				if tmpl.Spec.SchedulerName != "tandem-scheduler" || tmpl.Labels["tandem.dev/role"] == "" || tmpl.Labels["tandem.dev/group"] == "" {
					t.Errorf("example %s: scheduler %q labels %v, want tandem-scheduler with role and group", d.Name, tmpl.Spec.SchedulerName, tmpl.Labels)
				}
				if !strings.Contains(strings.Join(tmpl.Spec.Containers[0].Args, " "), `"kv_connector":"NixlConnector"`) {
					t.Errorf("example %s does not configure the NIXL connector", d.Name)
				}
			}
		}
		if groups != 1 || engines != 4 {
			t.Errorf("examples hold %d PodGroups and %d engine Deployments, want 1 and 4", groups, engines)
		}
	})

	t.Run("SchedulerServiceAccountMayDoWhatKubeSchedulerNeeds", func(t *testing.T) {
		checkAccess(t, cp.Config, schedulerSAUser, schedulerSAGroups, true, []string{
			"get tandem.dev nodetopologies", "list tandem.dev nodetopologies", "watch tandem.dev nodetopologies",
			"list scheduling.x-k8s.io podgroups default", "watch scheduling.x-k8s.io podgroups",
			"list core pods", "watch core pods", "patch core pods default", "delete core pods default",
			"create core pods/binding default", "patch core pods/status default", "update core pods/status default",
			"create core events default", "create events.k8s.io events default", "patch events.k8s.io events default",
			"create coordination.k8s.io leases tandem-system",
			"get coordination.k8s.io leases tandem-system/tandem-scheduler",
			"update coordination.k8s.io leases tandem-system/tandem-scheduler",
			"get core configmaps kube-system/extension-apiserver-authentication",
			"create authentication.k8s.io tokenreviews", "create authorization.k8s.io subjectaccessreviews",
			"list core nodes", "watch core nodes", "list core namespaces", "list core services", "list core replicationcontrollers",
			"list core persistentvolumes", "update core persistentvolumes", "list core persistentvolumeclaims", "patch core persistentvolumeclaims default",
			"list apps replicasets", "list apps statefulsets", "list policy poddisruptionbudgets",
			"list storage.k8s.io storageclasses", "list storage.k8s.io csinodes", "list storage.k8s.io csidrivers",
			"list storage.k8s.io csistoragecapacities", "list storage.k8s.io volumeattachments",
			"list resource.k8s.io resourceclaims", "update resource.k8s.io resourceclaims/status default",
			"list resource.k8s.io resourceslices", "list resource.k8s.io deviceclasses",
			// New in kube-scheduler 1.37's defaults: DeviceTaintRules, the claims
			// of DRA-backed extended resources, and allocations through
			// resourceclaims/binding.
			"list resource.k8s.io devicetaintrules", "watch resource.k8s.io devicetaintrules",
			"create resource.k8s.io resourceclaims default", "delete resource.k8s.io resourceclaims default",
			"update resource.k8s.io resourceclaims/binding default",
		})
		checkAccess(t, cp.Config, schedulerSAUser, schedulerSAGroups, false, []string{
			"create tandem.dev nodetopologies", "update tandem.dev nodetopologies/status", "patch tandem.dev nodetopologies",
			"delete core nodes", "patch core nodes", "update core nodes/status",
			"get core secrets kube-system", "list core secrets", "get core secrets tandem-system",
			"create core pods default", "update core pods default",
			"get coordination.k8s.io leases kube-system/kube-scheduler", "update coordination.k8s.io leases tandem-system/other",
			"update coordination.k8s.io leases default/tandem-scheduler",
			"get core configmaps kube-system/kube-proxy", "list core configmaps",
			"update scheduling.x-k8s.io podgroups/status default", "create scheduling.x-k8s.io podgroups default",
			"create apps deployments default", "create rbac.authorization.k8s.io clusterrolebindings",
		})
	})

	t.Run("AgentServiceAccountMayWriteTopologyAndNothingElse", func(t *testing.T) {
		checkAccess(t, cp.Config, agentSAUser, agentSAGroups, true, []string{
			"create tandem.dev nodetopologies", "get tandem.dev nodetopologies", "list tandem.dev nodetopologies",
			"watch tandem.dev nodetopologies", "update tandem.dev nodetopologies", "patch tandem.dev nodetopologies",
			"update tandem.dev nodetopologies/status", "patch tandem.dev nodetopologies/status",
			"get core nodes", "list core nodes", "watch core nodes", "patch core nodes", "patch core nodes/status",
			"create core events default", "create events.k8s.io events default",
			"get resource.k8s.io resourceslices", "list resource.k8s.io resourceslices",
		})
		checkAccess(t, cp.Config, agentSAUser, agentSAGroups, false, []string{
			"delete tandem.dev nodetopologies", "delete core nodes", "update core nodes", "create core nodes",
			"list core pods", "create core pods/binding default", "get core secrets tandem-agent", "list core secrets",
			"list scheduling.x-k8s.io podgroups", "update coordination.k8s.io leases tandem-system/tandem-scheduler",
			"create core pods tandem-agent",
			"watch resource.k8s.io resourceslices", "create resource.k8s.io resourceslices", "delete resource.k8s.io resourceslices",
			"list resource.k8s.io resourceclaims", "get resource.k8s.io resourceclaims default",
		})
	})

	// The real thing: the scheduler, from the shipped configuration, talking
	// to the apiserver as its service account, places a prefill and a decode
	// and stamps their placement. A missing list or watch would leave its
	// informers unsynced and the pods pending; a missing patch, no stamp.
	t.Run("SchedulerRunsAsItsServiceAccount", func(t *testing.T) {
		desc, err := clusterdesc.Parse([]byte(`
nodes:
- {name: rbac-gpu, count: 2, shape: hgx-h100, spine: s1, leaf: s1-l1}
`))
		if err != nil {
			t.Fatal(err)
		}
		if err := clusterdesc.Create(context.Background(), cp.Client, cp.Tandem, desc.Build(time.Now())); err != nil {
			t.Fatal(err)
		}
		as := &controlplane.ControlPlane{
			Config:     cp.Config,
			Kubeconfig: impersonatingKubeconfig(t, cp.Config, schedulerSAUser, schedulerSAGroups),
			Client:     cp.Client,
			Tandem:     cp.Tandem,
		}
		if err := as.StartScheduler(t, controlplane.ShippedSchedulerConfig(), clock.RealClock{}); err != nil {
			t.Fatalf("starting the scheduler as %s: %v", schedulerSAUser, err)
		}
		createPod(t, as, "rbac-prefill", 2, withLabels("tandem.dev/role", "prefill", "tandem.dev/group", "rbac"))
		createPod(t, as, "rbac-decode", 2, withLabels("tandem.dev/role", "decode", "tandem.dev/group", "rbac"))
		for _, name := range []string{"rbac-prefill", "rbac-decode"} {
			waitForBinding(t, as, name)
			err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
				pod, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				events, err := listEvents(ctx, cp, name)
				if err != nil {
					return false, err
				}
				scheduled := slices.ContainsFunc(events, func(e v1.Event) bool { return e.Reason == "Scheduled" })
				return scheduled && pod.Annotations["tandem.dev/placement"] != "", nil
			})
			if err != nil {
				t.Errorf("pod %s: no Scheduled event or no tandem.dev/placement stamp from the scheduler's service account: %v", name, err)
			}
		}
	})
}

// TestAdmissionPolicyConfinesAgentToItsNode gives the agent's service account
// a token bound to node gpu-a, as the kubelet's projected token is bound to
// the agent's pod on its node, and shows that RBAC lets it write every
// NodeTopology and Node while the ValidatingAdmissionPolicies narrow that to
// gpu-a's.
func TestAdmissionPolicyConfinesAgentToItsNode(t *testing.T) {
	cp := startAuthorizingControlPlane(t)
	newManifestApplier(t, cp.Config).apply(t, kustomizeBuild(t))
	checkAgentConfined(t, cp, agentNamespace, "tandem-agent")
}

// An overlay that renames the agent's namespace and name (kustomize's
// namespace: and namePrefix:) changes nothing the policies rely on.
func TestAdmissionPolicyConfinesRenamedAgent(t *testing.T) {
	cp := startAuthorizingControlPlane(t)
	applier := newManifestApplier(t, cp.Config)
	var crds []*unstructured.Unstructured
	for _, obj := range kustomizeBuild(t) {
		if obj.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, obj)
		}
	}
	applier.apply(t, crds)
	renamed := kustomizeBuildDir(t, filepath.Join("testdata", "renamed-agent"))
	findObject(t, renamed, "ServiceAccount", "gpu-ops", "acme-tandem-agent")
	applier.apply(t, renamed)
	checkAgentConfined(t, cp, "gpu-ops", "acme-tandem-agent")
}

// checkAgentConfined requests node-bound tokens for the agent's service
// account and checks, against the apiserver, every write the policies allow
// and every one they refuse.
func checkAgentConfined(t *testing.T, cp *controlplane.ControlPlane, agentNS, agentSA string) {
	ctx := context.Background()
	saUser := "system:serviceaccount:" + agentNS + ":" + agentSA
	nodes := map[string]*v1.Node{}
	for _, name := range []string{"gpu-a", "gpu-b"} {
		node, err := cp.Client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"example.com/pool": "gpu"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node.Status = v1.NodeStatus{
			Capacity:    v1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")},
			Allocatable: v1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")},
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionFalse, Reason: "KubeletNotReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		}
		if node, err = cp.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		nodes[name] = node
	}
	tr, err := cp.Client.CoreV1().ServiceAccounts(agentNS).CreateToken(ctx, agentSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: "gpu-a", UID: nodes["gpu-a"].UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for the agent bound to node gpu-a: %v", err)
	}
	agentCfg := rest.AnonymousClientConfig(cp.Config)
	agentCfg.BearerToken = tr.Status.Token
	agentKube := kubernetes.NewForConfigOrDie(agentCfg)
	agentTandem := versioned.NewForConfigOrDie(controlplane.JSONConfig(agentCfg))

	// The apiserver puts the bound node into the agent's user info under the
	// key the policies read.
	self, err := agentKube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := self.Status.UserInfo; u.Username != saUser || !slices.Equal(u.Extra[nodeNameExtraKey], authenticationv1.ExtraValue{"gpu-a"}) {
		t.Fatalf("the agent's token authenticates as %q with extra %v, want %q with %s=[gpu-a]", u.Username, u.Extra, saUser, nodeNameExtraKey)
	}

	// Policies take effect once the apiserver's policy informers see them.
	// Until then the agent's write to gpu-b succeeds (RBAC allows it); undo
	// it and try again.
	topology := func(name string) *topologyv1alpha1.NodeTopology {
		return &topologyv1alpha1.NodeTopology{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	err = eventuallyDenied(t, "the agent creating NodeTopology gpu-b", func(ctx context.Context) error {
		_, err := agentTandem.TandemV1alpha1().NodeTopologies().Create(ctx, topology("gpu-b"), metav1.CreateOptions{})
		if err == nil {
			return cp.Tandem.TandemV1alpha1().NodeTopologies().Delete(ctx, "gpu-b", metav1.DeleteOptions{})
		}
		return err
	})
	expectDenied(t, err, `tandem-agent on node "gpu-a" may not write NodeTopology "gpu-b"`)
	err = eventuallyDenied(t, "the agent labelling node gpu-b", func(ctx context.Context) error {
		return patchNodeLabel(ctx, agentKube, "gpu-b", "tandem.dev/leaf", "l1")
	})
	expectDenied(t, err, `tandem-agent on node "gpu-a" may not write Node "gpu-b"`)
	_, err = agentTandem.TandemV1alpha1().NodeTopologies().Create(ctx, topology("no-such-node"), metav1.CreateOptions{})
	expectDenied(t, err, `tandem-agent on node "gpu-a" may not write NodeTopology "no-such-node"`)

	// Its own node: create, update, status, as the agent's publisher does.
	topo, err := agentTandem.TandemV1alpha1().NodeTopologies().Create(ctx, topology("gpu-a"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the agent on gpu-a creating NodeTopology gpu-a: %v", err)
	}
	topo.Labels = map[string]string{"example.com/checked": "true"}
	if topo, err = agentTandem.TandemV1alpha1().NodeTopologies().Update(ctx, topo, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the agent on gpu-a updating NodeTopology gpu-a: %v", err)
	}
	topo.Status = topologyv1alpha1.NodeTopologyStatus{LastHeartbeatTime: metav1.Now()}
	if _, err = agentTandem.TandemV1alpha1().NodeTopologies().UpdateStatus(ctx, topo, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the agent on gpu-a updating the status of NodeTopology gpu-a: %v", err)
	}
	heartbeat := []byte(fmt.Sprintf(`{"status":{"lastHeartbeatTime":%q}}`, time.Now().UTC().Format(time.RFC3339)))
	if _, err := agentTandem.TandemV1alpha1().NodeTopologies().Patch(ctx, "gpu-a", types.MergePatchType, heartbeat, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("the agent on gpu-a patching the status of NodeTopology gpu-a: %v", err)
	}

	// Another node's, which exists (written by an administrator, whom the
	// policies leave alone).
	other, err := cp.Tandem.TandemV1alpha1().NodeTopologies().Create(ctx, topology("gpu-b"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("an administrator creating NodeTopology gpu-b: %v", err)
	}
	other.Status = topologyv1alpha1.NodeTopologyStatus{LastHeartbeatTime: metav1.Now()}
	if other, err = cp.Tandem.TandemV1alpha1().NodeTopologies().UpdateStatus(ctx, other, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("an administrator writing the status of NodeTopology gpu-b: %v", err)
	}
	_, err = agentTandem.TandemV1alpha1().NodeTopologies().UpdateStatus(ctx, other, metav1.UpdateOptions{})
	expectDenied(t, err, `tandem-agent on node "gpu-a" may not write NodeTopology "gpu-b"`)
	_, err = agentTandem.TandemV1alpha1().NodeTopologies().Patch(ctx, "gpu-b", types.MergePatchType, heartbeat, metav1.PatchOptions{}, "status")
	expectDenied(t, err, `tandem-agent on node "gpu-a" may not write NodeTopology "gpu-b"`)
	_, err = agentTandem.TandemV1alpha1().NodeTopologies().Patch(ctx, "gpu-b", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	expectDenied(t, err, `tandem-agent on node "gpu-a" may not write NodeTopology "gpu-b"`)

	// Nodes: its own tandem.dev/ labels and condition, nothing else.
	if err := patchNodeLabel(ctx, agentKube, "gpu-a", "tandem.dev/leaf", "l1"); err != nil {
		t.Errorf("the agent on gpu-a setting tandem.dev/leaf on gpu-a: %v", err)
	}
	nodePatch := func(body string, subresources ...string) error {
		_, err := agentKube.CoreV1().Nodes().Patch(ctx, "gpu-a", types.MergePatchType, []byte(body), metav1.PatchOptions{}, subresources...)
		return err
	}
	if err := nodePatch(`{"metadata":{"labels":{"tandem.dev/leaf":null}}}`); err != nil {
		t.Errorf("the agent on gpu-a removing tandem.dev/leaf from gpu-a: %v", err)
	}
	const labelsOnly = `may change only tandem.dev/ labels`
	expectDenied(t, patchNodeLabel(ctx, agentKube, "gpu-a", "example.com/pool", "cpu"), labelsOnly)
	expectDenied(t, nodePatch(`{"spec":{"unschedulable":true}}`), labelsOnly)
	expectDenied(t, nodePatch(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`), labelsOnly)
	expectDenied(t, nodePatch(`{"metadata":{"labels":{"example.com/pool":null}}}`), labelsOnly)
	expectDenied(t, nodePatch(`{"metadata":{"annotations":{"example.com/owner":"agent"}}}`), labelsOnly)
	expectDenied(t, nodePatch(`{"metadata":{"finalizers":["example.com/hold"]}}`), labelsOnly)

	// Through nodes/status: its GPUDirectRDMAReady condition, nothing else.
	now := time.Now().UTC().Format(time.RFC3339)
	condition := []byte(fmt.Sprintf(`{"status":{"conditions":[{"type":"GPUDirectRDMAReady","status":"True","reason":"ChecksPassed","message":"all checks passed","lastTransitionTime":%q,"lastHeartbeatTime":%q}]}}`, now, now))
	if _, err := agentKube.CoreV1().Nodes().Patch(ctx, "gpu-a", types.StrategicMergePatchType, condition, metav1.PatchOptions{}, "status"); err != nil {
		t.Errorf("the agent on gpu-a setting its GPUDirectRDMAReady condition: %v", err)
	}
	_, err = agentKube.CoreV1().Nodes().Patch(ctx, "gpu-b", types.StrategicMergePatchType, condition, metav1.PatchOptions{}, "status")
	expectDenied(t, err, `tandem-agent on node "gpu-a" may not write Node "gpu-b"`)
	const conditionOnly = `may change only its GPUDirectRDMAReady condition`
	for what, body := range map[string]string{
		"a control-plane label":    `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`,
		"a node-restriction label": `{"metadata":{"labels":{"node-restriction.kubernetes.io/tenant":"agent"}}}`,
		"removing a label":         `{"metadata":{"labels":{"example.com/pool":null}}}`,
		"a tandem.dev label":       `{"metadata":{"labels":{"tandem.dev/leaf":"l9"}}}`,
		"a foreign annotation":     `{"metadata":{"annotations":{"example.com/owner":"agent"}}}`,
		"a finalizer":              `{"metadata":{"finalizers":["example.com/hold"]}}`,
		"raising allocatable GPUs": `{"status":{"allocatable":{"nvidia.com/gpu":"64"}}}`,
		"raising GPU capacity":     `{"status":{"capacity":{"nvidia.com/gpu":"64"}}}`,
		"an address":               `{"status":{"addresses":[{"type":"InternalIP","address":"10.9.9.9"}]}}`,
		// NodeDeclaredFeatures (GA in 1.37) filters pods on this list.
		"a declared feature": `{"status":{"declaredFeatures":["GuaranteedQoSPodCPUResize"]}}`,
	} {
		t.Run("status: "+what, func(t *testing.T) { expectDenied(t, nodePatch(body, "status"), conditionOnly) })
	}
	ready := []byte(fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","lastTransitionTime":%q,"lastHeartbeatTime":%q}]}}`, now, now))
	_, err = agentKube.CoreV1().Nodes().Patch(ctx, "gpu-a", types.StrategicMergePatchType, ready, metav1.PatchOptions{}, "status")
	expectDenied(t, err, conditionOnly)
	after, err := cp.Client.CoreV1().Nodes().Get(ctx, "gpu-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Status.Allocatable["nvidia.com/gpu"]; got.Value() != 8 || after.Labels["example.com/pool"] != "gpu" || len(after.Annotations) != 0 || len(after.Finalizers) != 0 {
		t.Errorf("node gpu-a changed under refused writes: allocatable %s, labels %v, annotations %v, finalizers %v", got.String(), after.Labels, after.Annotations, after.Finalizers)
	}

	// A credential without a node (here: impersonation, as a long-lived
	// secret token would be) is refused outright.
	unbound := rest.CopyConfig(cp.Config)
	unbound.Impersonate = rest.ImpersonationConfig{UserName: saUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + agentNS, "system:authenticated"}}
	unboundTandem := versioned.NewForConfigOrDie(controlplane.JSONConfig(unbound))
	_, err = unboundTandem.TandemV1alpha1().NodeTopologies().Patch(ctx, "gpu-a", types.MergePatchType, heartbeat, metav1.PatchOptions{}, "status")
	expectDenied(t, err, "no "+nodeNameExtraKey+" in its credentials")
}

// startAuthorizingControlPlane starts a control plane that authorizes with
// Node and RBAC, as production clusters do, and installs nothing: the
// manifests bring their CRDs and namespaces.
func startAuthorizingControlPlane(t *testing.T) *controlplane.ControlPlane {
	t.Helper()
	return controlplane.StartControlPlaneWith(t, controlplane.Options{AuthorizationModes: []string{"Node", "RBAC"}, SkipInstall: true})
}

// kustomizeBuild renders manifests/<elem...> as `kubectl apply -k` would,
// with kustomize's own library.
func kustomizeBuild(t *testing.T, elem ...string) []*unstructured.Unstructured {
	t.Helper()
	return kustomizeBuildDir(t, filepath.Join(append([]string{controlplane.RepoRoot(), "manifests"}, elem...)...))
}

// kustomizeBuildDir renders the kustomization in dir.
func kustomizeBuildDir(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		t.Fatalf("rendering %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding the kustomize output of %s: %v", dir, err)
		}
		if len(obj) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize rendered nothing from %s", dir)
	}
	return objs
}

// manifestApplier applies objects as `kubectl apply --server-side` does, with
// strict field validation, so a misspelt field fails.
type manifestApplier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newManifestApplier(t *testing.T, cfg *rest.Config) *manifestApplier {
	t.Helper()
	jsonCfg := controlplane.JSONConfig(cfg)
	disc, err := discovery.NewDiscoveryClientForConfig(jsonCfg)
	if err != nil {
		t.Fatal(err)
	}
	return &manifestApplier{
		dyn:    dynamic.NewForConfigOrDie(jsonCfg),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
	}
}

// apply applies CRDs first and waits until they are served, then namespaces,
// then everything else.
func (a *manifestApplier) apply(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	rank := func(o *unstructured.Unstructured) int {
		switch o.GetKind() {
		case "CustomResourceDefinition":
			return 0
		case "Namespace":
			return 1
		}
		return 2
	}
	sorted := slices.Clone(objs)
	sort.SliceStable(sorted, func(i, j int) bool { return rank(sorted[i]) < rank(sorted[j]) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crds := false
	for _, obj := range sorted {
		if rank(obj) > 0 && crds {
			if err := a.waitForCRDs(ctx, objs); err != nil {
				t.Fatal(err)
			}
			crds = false
		}
		if err := a.applyOne(ctx, obj); err != nil {
			t.Fatalf("applying %s %s: %v", obj.GetKind(), objectKey(obj), err)
		}
		crds = crds || rank(obj) == 0
	}
}

func (a *manifestApplier) applyOne(ctx context.Context, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", gvk, err)
	}
	ns := ""
	if mapping.Scope.Name() == "namespace" {
		ns = obj.GetNamespace()
		if ns == "" {
			ns = namespace
		}
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	_, err = a.dyn.Resource(mapping.Resource).Namespace(ns).Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager:    "tandem-manifests-test",
		Force:           ptr.To(true),
		FieldValidation: metav1.FieldValidationStrict,
	})
	return err
}

func (a *manifestApplier) waitForCRDs(ctx context.Context, objs []*unstructured.Unstructured) error {
	crdResource := a.dyn.Resource(apiextensionsGVR)
	for _, obj := range objs {
		if obj.GetKind() != "CustomResourceDefinition" {
			continue
		}
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			got, err := crdResource.Get(ctx, obj.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conditions {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for CRD %s to be established: %w", obj.GetName(), err)
		}
	}
	a.mapper.Reset()
	return nil
}

var apiextensionsGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func objectKey(obj *unstructured.Unstructured) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}

// findObject returns the one object of kind in namespace whose name is name
// or, for a generated ConfigMap, starts with it.
func findObject(t *testing.T, objs []*unstructured.Unstructured, kind, ns, name string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, obj := range objs {
		if obj.GetKind() == kind && obj.GetNamespace() == ns && (obj.GetName() == name || strings.HasSuffix(name, "-") && strings.HasPrefix(obj.GetName(), name)) {
			found = append(found, obj)
		}
	}
	if len(found) != 1 {
		t.Fatalf("found %d %s objects named %s in namespace %q, want 1", len(found), kind, name, ns)
	}
	return found[0]
}

func fromUnstructured(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), objectKey(obj), err)
	}
}

// podFromTemplate is the pod a workload's controller would create.
func podFromTemplate(t *testing.T, workload *unstructured.Unstructured) *v1.Pod {
	t.Helper()
	tmpl, found, err := unstructured.NestedMap(workload.Object, "spec", "template")
	if err != nil || !found {
		t.Fatalf("%s %s has no pod template: %v", workload.GetKind(), objectKey(workload), err)
	}
	var pt v1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pt); err != nil {
		t.Fatal(err)
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: workload.GetName() + "-probe", Namespace: workload.GetNamespace(), Labels: pt.Labels, Annotations: pt.Annotations},
		Spec:       pt.Spec,
	}
}

// dryRunPod asks the apiserver to admit the pod without creating it.
func dryRunPod(cp *controlplane.ControlPlane, pod *v1.Pod) error {
	_, err := cp.Client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

func hostPathVolume(spec v1.PodSpec, name string) *v1.HostPathVolumeSource {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v.HostPath
		}
	}
	return nil
}

func flagValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// checkAccess asks the apiserver, as user, whether each request is allowed.
// A request reads "verb group resource[/subresource] [namespace][/name]",
// with group "core" for the legacy group.
func checkAccess(t *testing.T, cfg *rest.Config, user string, groups []string, want bool, requests []string) {
	t.Helper()
	impersonated := rest.CopyConfig(cfg)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	client := kubernetes.NewForConfigOrDie(impersonated)
	for _, req := range requests {
		f := strings.Fields(req)
		attrs := &authorizationv1.ResourceAttributes{Verb: f[0], Group: f[1]}
		if attrs.Group == "core" {
			attrs.Group = ""
		}
		attrs.Resource, attrs.Subresource, _ = strings.Cut(f[2], "/")
		if len(f) > 3 {
			attrs.Namespace, attrs.Name, _ = strings.Cut(f[3], "/")
		}
		review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(),
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review %q as %s: %v", req, user, err)
		}
		if review.Status.Allowed != want {
			t.Errorf("%s: %q allowed=%v, want %v (%s)", user, req, review.Status.Allowed, want, review.Status.Reason)
		}
	}
}

// impersonatingKubeconfig writes a kubeconfig that reaches the apiserver as
// cfg's user impersonating user, for a component that reads a kubeconfig.
func impersonatingKubeconfig(t *testing.T, cfg *rest.Config, user string, groups []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig-"+strings.ReplaceAll(user, ":", "-"))
	if err := controlplane.WriteKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range kc.AuthInfos {
		auth.Impersonate, auth.ImpersonateGroups = user, groups
	}
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func patchNodeLabel(ctx context.Context, client kubernetes.Interface, node, key, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// eventuallyDenied retries try until an admission policy denies it, and
// returns the denial.
func eventuallyDenied(t *testing.T, what string, try func(context.Context) error) error {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		last = try(ctx)
		return last != nil && strings.Contains(last.Error(), "ValidatingAdmissionPolicy"), nil
	})
	if err != nil {
		t.Fatalf("%s was never denied by an admission policy; last result: %v", what, last)
	}
	return last
}

func expectDenied(t *testing.T, err error, message string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("allowed, want denied with %q", message)
	case !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), message):
		t.Errorf("got %v, want Forbidden with %q", err, message)
	}
}

// checkMetricsManifests: the metrics Service reaches the scheduler pods'
// secure port, the overlay's ServiceMonitor selects that Service's port,
// and only the overlay's binding lets Prometheus's service account get
// /metrics. The ServiceMonitor itself is not applied: its CRD is the
// Prometheus operator's, which this repository does not vendor.
func checkMetricsManifests(t *testing.T, cp *controlplane.ControlPlane, ap *manifestApplier, base, monitor []*unstructured.Unstructured) {
	svc := &v1.Service{}
	fromUnstructured(t, findObject(t, base, "Service", "tandem-system", "tandem-scheduler-metrics"), svc)
	deploy := &appsv1.Deployment{}
	fromUnstructured(t, findObject(t, base, "Deployment", "tandem-system", "tandem-scheduler"), deploy)
	tmplLabels := deploy.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if tmplLabels[k] != v {
			t.Errorf("Service selector %v does not select the scheduler pods %v", svc.Spec.Selector, tmplLabels)
		}
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("metrics Service ports %+v, want the one secure port", svc.Spec.Ports)
	}
	port := svc.Spec.Ports[0]
	c := deploy.Spec.Template.Spec.Containers[0]
	if !slices.ContainsFunc(c.Ports, func(p v1.ContainerPort) bool {
		return p.Name == port.TargetPort.String() && p.ContainerPort == 10259 && port.Port == 10259
	}) {
		t.Errorf("Service port %+v is not the scheduler's secure port %+v", port, c.Ports)
	}

	sm := findObject(t, monitor, "ServiceMonitor", "tandem-system", "tandem-scheduler")
	match, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range match {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %v does not select Service labels %v", match, svc.Labels)
		}
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v, want one", endpoints)
	}
	ep, _ := endpoints[0].(map[string]any)
	if ep["port"] != port.Name || ep["scheme"] != "https" || ep["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %v, want port %s over https at /metrics", ep, port.Name)
	}

	var rest []*unstructured.Unstructured
	for _, obj := range monitor {
		if obj.GetKind() != "ServiceMonitor" {
			rest = append(rest, obj)
		}
	}
	const prometheus = "system:serviceaccount:monitoring:prometheus-k8s"
	promGroups := []string{"system:serviceaccounts", "system:serviceaccounts:monitoring", "system:authenticated"}
	mayGetMetrics := func() bool {
		review, err := cp.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: prometheus, Groups: promGroups,
				NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return review.Status.Allowed
	}
	if mayGetMetrics() {
		t.Errorf("%s may get /metrics with the base install alone", prometheus)
	}
	ap.apply(t, rest)
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return mayGetMetrics(), nil
	}); err != nil {
		t.Errorf("%s may not get /metrics after overlays/servicemonitor", prometheus)
	}
}
