package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// The release the tests render, as docs/deploy.md installs it:
// `helm install tandem charts/tandem -n tandem-system --create-namespace`.
const (
	helmRelease   = "tandem"
	helmNamespace = "tandem-system"
)

func chartDir() string { return filepath.Join(controlplane.RepoRoot(), "charts", "tandem") }

// helmTemplate renders the chart with values through Helm's SDK as
// `helm template` does (a client-side dry run of an install), schema
// validation included.
func helmTemplate(t *testing.T, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir())
	if err != nil {
		t.Fatalf("loading %s: %v", chartDir(), err)
	}
	install := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil))))
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = helmRelease
	install.Namespace = helmNamespace
	install.Replace = true
	install.KubeVersion = &common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := install.RunWithContext(context.Background(), chrt, values)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("helm returned a %T, want a *release.Release", rel)
	}
	objs, err := decodeManifests([]byte(r.Manifest))
	if err != nil {
		t.Fatalf("decoding the chart's output: %v\n%s", err, r.Manifest)
	}
	return objs, nil
}

func mustHelmTemplate(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := helmTemplate(t, values)
	if err != nil {
		t.Fatalf("rendering the chart with %v: %v", values, err)
	}
	return objs
}

func decodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
}

// helmOnlyLabels and helmOnlyAnnotations are what the chart adds to the
// objects manifests/ renders, and the comparison strips:
//   - the labels Helm's conventions put on every object's metadata
//     (helm.sh/chart, app.kubernetes.io/managed-by, /instance, /version);
//   - helm.sh/resource-policy: keep on the CRDs (crds.keep), so that
//     `helm uninstall` does not delete every PodGroup and NodeTopology;
//   - checksum/config on the scheduler's pod template, which rolls the pods
//     when the configuration changes; manifests/ does that with the
//     ConfigMap's hashed name, which the comparison reduces to the chart's
//     fixed name tandem-scheduler-config.
//
// The scheduler configuration is compared as a parsed document, so the
// comments of manifests/scheduler/scheduler-config.yaml do not count, and a
// pod template's volumes and volume mounts in a fixed order
// (sortPodTemplateLists).
var (
	helmOnlyLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
	helmOnlyAnnotations = []string{"helm.sh/resource-policy"}
)

const schedulerConfigMap = "tandem-scheduler-config"

func normalise(t *testing.T, obj *unstructured.Unstructured) map[string]any {
	t.Helper()
	o := obj.DeepCopy()
	labels := o.GetLabels()
	for _, k := range helmOnlyLabels {
		delete(labels, k)
	}
	annotations := o.GetAnnotations()
	for _, k := range helmOnlyAnnotations {
		delete(annotations, k)
	}
	// An emptied map is left out, as manifests/ leaves it out.
	if len(labels) == 0 {
		unstructured.RemoveNestedField(o.Object, "metadata", "labels")
	} else {
		o.SetLabels(labels)
	}
	if len(annotations) == 0 {
		unstructured.RemoveNestedField(o.Object, "metadata", "annotations")
	} else {
		o.SetAnnotations(annotations)
	}
	if o.GetKind() == "ConfigMap" && strings.HasPrefix(o.GetName(), schedulerConfigMap) {
		o.SetName(schedulerConfigMap)
		doc, _, _ := unstructured.NestedString(o.Object, "data", "scheduler-config.yaml")
		var parsed map[string]any
		if err := yaml.Unmarshal([]byte(doc), &parsed); err != nil {
			t.Fatalf("ConfigMap %s: scheduler-config.yaml: %v", objectKey(obj), err)
		}
		if err := unstructured.SetNestedField(o.Object, parsed, "data", "scheduler-config.yaml"); err != nil {
			t.Fatal(err)
		}
	}
	if o.GetKind() == "Deployment" {
		unstructured.RemoveNestedField(o.Object, "spec", "template", "metadata", "annotations", "checksum/config")
		if a, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "metadata", "annotations"); len(a) == 0 {
			unstructured.RemoveNestedField(o.Object, "spec", "template", "metadata", "annotations")
		}
		volumes, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
		for _, v := range volumes {
			cm, _ := v.(map[string]any)["configMap"].(map[string]any)
			if name, _ := cm["name"].(string); strings.HasPrefix(name, schedulerConfigMap) {
				cm["name"] = schedulerConfigMap
			}
		}
		_ = unstructured.SetNestedSlice(o.Object, volumes, "spec", "template", "spec", "volumes")
	}
	sortPodTemplateLists(o)
	// The same decoder for both sides, so that numbers compare alike.
	data, err := json.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sortPodTemplateLists orders a pod template's volumes by name and its
// containers' volume mounts by mount path. Kubernetes keys both lists by
// those fields, and a kustomize patch inserts what it adds at no fixed place
// (before the base's entries, or after the one it also patches), while the
// chart appends; none of the mounts nests in another, so order means nothing.
func sortPodTemplateLists(o *unstructured.Unstructured) {
	byKey := func(key string) func(a, b any) int {
		return func(a, b any) int {
			x, _ := a.(map[string]any)[key].(string)
			y, _ := b.(map[string]any)[key].(string)
			return strings.Compare(x, y)
		}
	}
	spec, found, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if !found {
		return
	}
	if volumes, ok := spec["volumes"].([]any); ok {
		slices.SortStableFunc(volumes, byKey("name"))
	}
	containers, _ := spec["containers"].([]any)
	for _, c := range containers {
		if mounts, ok := c.(map[string]any)["volumeMounts"].([]any); ok {
			slices.SortStableFunc(mounts, byKey("mountPath"))
		}
	}
	_ = unstructured.SetNestedMap(o.Object, spec, "spec", "template", "spec")
}

func identity(o *unstructured.Unstructured) string {
	name := o.GetName()
	if o.GetKind() == "ConfigMap" && strings.HasPrefix(name, schedulerConfigMap) {
		name = schedulerConfigMap
	}
	return o.GetAPIVersion() + " " + o.GetKind() + " " + o.GetNamespace() + "/" + name
}

// compareObjects reports every object one side has and the other lacks, and
// every object whose normalised content differs.
func compareObjects(t *testing.T, chart, kustomize []*unstructured.Unstructured) {
	t.Helper()
	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			if _, dup := m[identity(o)]; dup {
				t.Errorf("%s rendered twice", identity(o))
			}
			m[identity(o)] = o
		}
		return m
	}
	c, k := index(chart), index(kustomize)
	for id := range k {
		if _, ok := c[id]; !ok {
			t.Errorf("the chart does not render %s", id)
		}
	}
	for id, co := range c {
		ko, ok := k[id]
		if !ok {
			t.Errorf("the chart renders %s, which manifests/ does not", id)
			continue
		}
		if diff := cmp.Diff(normalise(t, ko), normalise(t, co)); diff != "" {
			t.Errorf("%s differs (-kustomize +chart):\n%s", id, diff)
		}
	}
}

// TestHelmChart renders charts/tandem with its default values through
// Helm's SDK, checks it renders the objects `kubectl apply -k manifests/`
// does, applies them to an empty cluster that authorizes with Node and RBAC
// (strict field validation), then renders and applies non-default values
// and checks that each took effect, down to the scheduler starting from the
// rendered configuration.
func TestHelmChart(t *testing.T) {
	defaults := mustHelmTemplate(t, nil)
	for _, o := range defaults {
		for _, k := range helmOnlyLabels {
			if _, ok := o.GetLabels()[k]; !ok {
				t.Errorf("%s %s lacks the label %s", o.GetKind(), objectKey(o), k)
			}
		}
	}
	t.Run("DefaultsRenderManifests", func(t *testing.T) {
		compareObjects(t, defaults, kustomizeBuild(t))
	})
	t.Run("OverlaysRenderTheirKustomizeOverlay", func(t *testing.T) {
		// Each agent overlay on its own renders the DaemonSet its
		// manifests/overlays/ directory renders.
		for dir, values := range map[string]map[string]any{
			"read-pci-config":     {"readPCIConfig": true},
			"configure-gpudirect": {"configureGPUDirect": true},
			"azure-nd":            {"azureND": map[string]any{"enabled": true}},
			"lldp":                {"lldp": map[string]any{"enabled": true}},
			"infiniband-probe":    {"infinibandProbe": true},
		} {
			t.Run(dir, func(t *testing.T) {
				chart := mustHelmTemplate(t, map[string]any{"agent": map[string]any{"overlays": values}})
				overlay := kustomizeBuild(t, "overlays", dir)
				compareObjects(t,
					[]*unstructured.Unstructured{findObject(t, chart, "DaemonSet", agentNamespace, "tandem-agent")},
					[]*unstructured.Unstructured{findObject(t, overlay, "DaemonSet", agentNamespace, "tandem-agent")})
			})
		}
		chart := mustHelmTemplate(t, map[string]any{"scheduler": map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}}})
		var monitor []*unstructured.Unstructured
		for _, o := range chart {
			if o.GetKind() == "ServiceMonitor" || o.GetName() == "tandem-scheduler-metrics-reader" && o.GetKind() == "ClusterRoleBinding" {
				monitor = append(monitor, o)
			}
		}
		compareObjects(t, monitor, kustomizeBuild(t, "overlays", "servicemonitor"))
	})

	cp := startAuthorizingControlPlane(t)
	ap := newManifestApplier(t, cp.Config)
	ap.apply(t, defaults)

	t.Run("NonDefaultValues", func(t *testing.T) {
		values := map[string]any{
			"crds": map[string]any{"podGroup": map[string]any{"install": false}},
			"scheduler": map[string]any{
				"image":               map[string]any{"tag": "v9.9.9-test"},
				"replicas":            int64(3),
				"extraArgs":           []any{"--v=4"},
				"nvlinkTopo":          map[string]any{"islandPolicy": "Preferred", "maxPCIeLevel": "PHB", "rdmaResourceNames": []any{"rdma/ib"}, "draRDMADeviceClassNames": []any{"dranet"}},
				"pdAffinity":          map[string]any{"levelPreset": "gke", "sameNode": "Forbid", "labelPresets": []any{}},
				"podDisruptionBudget": map[string]any{"enabled": false},
				"priorityClassName":   "",
			},
			"agent": map[string]any{
				"image":             map[string]any{"repository": "registry.example.com/tandem-agent", "tag": "v9.9.9-test"},
				"priorityClassName": "",
				"driverRoot":        "/",
				"runtimeClassName":  "nvidia",
				"overlays": map[string]any{
					"readPCIConfig": true,
					"lldp":          map[string]any{"enabled": true, "socket": "/var/run/lldpd/lldpd.socket"},
				},
			},
		}
		objs := mustHelmTemplate(t, values)
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" && o.GetName() == "podgroups.scheduling.x-k8s.io" {
				t.Errorf("crds.podGroup.install=false still renders the PodGroup CRD")
			}
			if o.GetKind() == "PodDisruptionBudget" {
				t.Errorf("scheduler.podDisruptionBudget.enabled=false still renders %s", objectKey(o))
			}
		}
		findObject(t, objs, "CustomResourceDefinition", "", "nodetopologies.tandem.dev")

		deploy := &appsv1.Deployment{}
		fromUnstructured(t, findObject(t, objs, "Deployment", helmNamespace, "tandem-scheduler"), deploy)
		if got := ptr.Deref(deploy.Spec.Replicas, 0); got != 3 {
			t.Errorf("scheduler replicas = %d, want 3", got)
		}
		sc := deploy.Spec.Template.Spec.Containers[0]
		if sc.Image != "ghcr.io/tandem-sched/tandem-scheduler:v9.9.9-test" {
			t.Errorf("scheduler image %q, want the custom tag", sc.Image)
		}
		if !slices.Equal(sc.Args, []string{"--config=/etc/tandem/scheduler-config.yaml", "--v=4"}) {
			t.Errorf("scheduler args %q, want the config and --v=4", sc.Args)
		}
		if pc := deploy.Spec.Template.Spec.PriorityClassName; pc != "" {
			t.Errorf("scheduler priorityClassName %q, want none", pc)
		}
		defaultDeploy := findObject(t, defaults, "Deployment", helmNamespace, "tandem-scheduler")
		defaultSum, _, _ := unstructured.NestedString(defaultDeploy.Object, "spec", "template", "metadata", "annotations", "checksum/config")
		if got := deploy.Spec.Template.Annotations["checksum/config"]; got == "" || got == defaultSum {
			t.Errorf("checksum/config %q did not change with the configuration (defaults: %q)", got, defaultSum)
		}

		cm := findObject(t, objs, "ConfigMap", helmNamespace, schedulerConfigMap)
		doc, _, _ := unstructured.NestedString(cm.Object, "data", "scheduler-config.yaml")
		var config struct {
			Profiles []struct {
				PluginConfig []struct {
					Name string         `json:"name"`
					Args map[string]any `json:"args"`
				} `json:"pluginConfig"`
			} `json:"profiles"`
		}
		if err := yaml.Unmarshal([]byte(doc), &config); err != nil {
			t.Fatal(err)
		}
		args := map[string]map[string]any{}
		for _, pc := range config.Profiles[0].PluginConfig {
			args[pc.Name] = pc.Args
		}
		wantArgs := map[string]map[string]any{
			"NVLinkTopo": {"gpuResourceName": "nvidia.com/gpu", "islandPolicy": "Preferred", "maxPCIeLevel": "PHB", "maxTopologyAge": "5m", "rdmaResourceNames": []any{"rdma/ib"}, "draRDMADeviceClassNames": []any{"dranet"}},
			// An empty labelPresets list is written out: it means tandem's
			// labels only, where leaving it out means every preset.
			"PDAffinity": {"levelPreset": "gke", "sameNode": "Forbid", "labelPresets": []any{}},
		}
		for name, want := range wantArgs {
			if !reflect.DeepEqual(args[name], want) {
				t.Errorf("%s args %v, want %v", name, args[name], want)
			}
		}

		ds := &appsv1.DaemonSet{}
		fromUnstructured(t, findObject(t, objs, "DaemonSet", agentNamespace, "tandem-agent"), ds)
		spec := ds.Spec.Template.Spec
		c := spec.Containers[0]
		if c.Image != "registry.example.com/tandem-agent:v9.9.9-test" {
			t.Errorf("agent image %q, want the custom repository and tag", c.Image)
		}
		if !slices.Contains(c.Args, "--leaf-sources=static,label,lldp") {
			t.Errorf("agent args %q lack the lldp leaf source", c.Args)
		}
		if sec := c.SecurityContext; sec == nil || ptr.Deref(sec.Privileged, false) || sec.Capabilities == nil || !slices.Equal(sec.Capabilities.Add, []v1.Capability{"SYS_ADMIN"}) {
			t.Errorf("agent securityContext %+v, want SYS_ADMIN (readPCIConfig), unprivileged", c.SecurityContext)
		}
		if hp := hostPathVolume(spec, "lldpd-socket"); hp == nil || hp.Path != "/var/run/lldpd/lldpd.socket" {
			t.Errorf("agent lldpd-socket volume %+v, want the configured host path", hp)
		}
		if hp := hostPathVolume(spec, "driver-root"); hp == nil || hp.Path != "/" {
			t.Errorf("agent driver-root volume %+v, want host path /", hp)
		}
		if spec.PriorityClassName != "" {
			t.Errorf("agent priorityClassName %q, want none", spec.PriorityClassName)
		}
		if got := ptr.Deref(spec.RuntimeClassName, ""); got != "nvidia" {
			t.Errorf("agent runtimeClassName %q, want nvidia", got)
		}

		// Applied over the default install: every object is valid as
		// rendered, and the agent pod is admitted in its namespace.
		ap.apply(t, objs)
		rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia"}, Handler: "nvidia"}
		if _, err := cp.Client.NodeV1().RuntimeClasses().Create(context.Background(), rc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := dryRunPod(cp, podFromTemplate(t, findObject(t, objs, "DaemonSet", agentNamespace, "tandem-agent"))); err != nil {
			t.Errorf("the agent pod with overlays is refused in %s: %v", agentNamespace, err)
		}
		served, err := cp.Client.AppsV1().Deployments(helmNamespace).Get(context.Background(), "tandem-scheduler", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ptr.Deref(served.Spec.Replicas, 0); got != 3 {
			t.Errorf("served scheduler replicas = %d after applying, want 3", got)
		}

		// Overlays combine: lldp and infinibandProbe both join the leaf
		// sources, and configureGPUDirect's capabilities add to the privileged
		// container's. (Not applied: the test apiserver disallows privileged
		// containers.)
		combined := mustHelmTemplate(t, map[string]any{"agent": map[string]any{"overlays": map[string]any{
			"configureGPUDirect": true, "lldp": map[string]any{"enabled": true}, "infinibandProbe": true,
		}}})
		ib := &appsv1.DaemonSet{}
		fromUnstructured(t, findObject(t, combined, "DaemonSet", agentNamespace, "tandem-agent"), ib)
		ic := ib.Spec.Template.Spec.Containers[0]
		for _, want := range []string{"--configure-gpudirect", "--enable-infiniband-probe", "--leaf-sources=static,label,lldp,infiniband"} {
			if !slices.Contains(ic.Args, want) {
				t.Errorf("agent args %q lack %s", ic.Args, want)
			}
		}
		if sec := ic.SecurityContext; sec == nil || !ptr.Deref(sec.Privileged, false) || sec.Capabilities == nil ||
			!slices.Equal(sec.Capabilities.Add, []v1.Capability{"SYS_ADMIN", "SYS_MODULE"}) {
			t.Errorf("agent securityContext %+v, want privileged with SYS_ADMIN and SYS_MODULE", ic.SecurityContext)
		}
		for _, name := range []string{"lldpd-socket", "dev-infiniband", "lib-modules"} {
			if hostPathVolume(ib.Spec.Template.Spec, name) == nil {
				t.Errorf("combined overlays: no hostPath volume %s", name)
			}
		}

		// The scheduler starts from the rendered configuration: the args
		// the values produced are ones its plugins accept.
		path := filepath.Join(t.TempDir(), "scheduler-config.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cp.StartScheduler(t, path, clock.RealClock{}); err != nil {
			t.Fatalf("the scheduler does not start from the rendered configuration: %v\n%s", err, doc)
		}
	})
}

// TestHelmChartRefusesBadValues: values.schema.json and the templates'
// checks refuse values that would install something broken, naming the
// value (the schema's errors name it by its path, /scheduler/replicas, and
// list an enum's choices).
func TestHelmChartRefusesBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		want   []string
	}{
		"UnknownLevelPreset": {
			values: map[string]any{"scheduler": map[string]any{"pdAffinity": map[string]any{"levelPreset": "aws"}}},
			want:   []string{"/scheduler/pdAffinity/levelPreset", "must be one of", "'gke'"},
		},
		"NegativeReplicas": {
			values: map[string]any{"scheduler": map[string]any{"replicas": int64(-1)}},
			want:   []string{"/scheduler/replicas", "minimum"},
		},
		"UnknownLabelPreset": {
			values: map[string]any{"scheduler": map[string]any{"pdAffinity": map[string]any{"labelPresets": []any{"vllm"}}}},
			want:   []string{"/scheduler/pdAffinity/labelPresets/0", "must be one of"},
		},
		"MisspeltKey": {
			values: map[string]any{"scheduler": map[string]any{"replica": int64(2)}},
			want:   []string{"scheduler", "replica"},
		},
		"IslandPolicy": {
			values: map[string]any{"scheduler": map[string]any{"nvlinkTopo": map[string]any{"islandPolicy": "required"}}},
			want:   []string{"/scheduler/nvlinkTopo/islandPolicy", "'Required'"},
		},
		"PermitWaitBeyondKubeSchedulersCap": {
			values: map[string]any{"scheduler": map[string]any{"gang": map[string]any{"permitWaitingTimeSeconds": int64(3600)}}},
			want:   []string{"/scheduler/gang/permitWaitingTimeSeconds", "maximum", "900"},
		},
		"AgentInTheSchedulerNamespace": {
			values: map[string]any{"agent": map[string]any{"namespace": helmNamespace}},
			want:   []string{"agent.namespace", helmNamespace, "Pod Security"},
		},
		"ServiceMonitorWithoutService": {
			values: map[string]any{"scheduler": map[string]any{"metrics": map[string]any{"service": map[string]any{"enabled": false}, "serviceMonitor": map[string]any{"enabled": true}}}},
			want:   []string{"scheduler.metrics.serviceMonitor.enabled", "scheduler.metrics.service.enabled"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := helmTemplate(t, tc.values)
			if err == nil {
				t.Fatalf("rendered %d objects, want an error naming %q", len(objs), tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestHelmChartSchemaKnowsThePresets: the schema's choices are the ones the
// plugins accept, so a preset added to tandem is not refused by the chart,
// and one the chart offers is not refused at scheduler start-up.
func TestHelmChartSchemaKnowsThePresets(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	enum := func(path ...string) []string {
		node := schema
		for _, p := range path {
			node, _ = node["properties"].(map[string]any)[p].(map[string]any)
		}
		if items, ok := node["items"].(map[string]any); ok {
			node = items
		}
		var out []string
		for _, v := range node["enum"].([]any) {
			if s := v.(string); s != "" {
				out = append(out, s)
			}
		}
		slices.Sort(out)
		return out
	}
	if got, want := enum("scheduler", "pdAffinity", "levelPreset"), topology.PresetNames(); !slices.Equal(got, want) {
		t.Errorf("values.schema.json level presets %v, PDAffinity knows %v", got, want)
	}
	if got, want := enum("scheduler", "pdAffinity", "labelPresets"), pdaffinity.LabelPresetNames(); !slices.Equal(got, want) {
		t.Errorf("values.schema.json label presets %v, PDAffinity knows %v", got, want)
	}
}
