package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"

	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
)

// stackSchemas are the upstream files TestServingStackExamples checks the
// examples against, under one directory per stack (see
// testdata/crds/README.md for where each comes from).
var stackSchemas = []string{
	"aibrix/orchestration.aibrix.ai_stormservices.yaml",
	"lws/disaggregatedset.x-k8s.io_disaggregatedsets.yaml",
	"dynamo/nvidia.com_dynamographdeployments.yaml",
	"llm-d/values.schema.json",
}

// stackSchemaDir is $TANDEM_STACK_CRDS, or testdata/crds. The test is
// skipped, naming what is missing, when the files are not there.
func stackSchemaDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TANDEM_STACK_CRDS")
	if dir == "" {
		dir = filepath.Join(controlplane.RepoRoot(), "test", "integration", "testdata", "crds")
	}
	var missing []string
	for _, f := range stackSchemas {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		t.Skipf("serving-stack schemas missing under %s (set TANDEM_STACK_CRDS; testdata/crds/README.md names the upstream files): %s", dir, strings.Join(missing, ", "))
	}
	return dir
}

// stackExample is one example of manifests/examples/<stack>/, the pod specs
// of its engines, and a field of the stack's own API to misspell.
type stackExample struct {
	stack, file string
	engines     func(obj map[string]any) [][]any // paths to the engines' pod specs
	stackField  []any                            // path to an object of the stack's API
}

var stackExamples = []stackExample{
	{
		stack: "aibrix", file: "stormservice.yaml",
		engines: func(obj map[string]any) [][]any {
			var paths [][]any
			for i := range len(at(obj, "spec", "template", "spec", "roles").([]any)) {
				paths = append(paths, []any{"spec", "template", "spec", "roles", i, "template", "spec"})
			}
			return paths
		},
		stackField: []any{"spec", "template", "spec", "schedulingStrategy", "coschedulingSchedulingStrategy"},
	},
	{
		stack: "lws", file: "disaggregatedset.yaml",
		engines: func(obj map[string]any) [][]any {
			var paths [][]any
			for i := range len(at(obj, "spec", "roles").([]any)) {
				paths = append(paths, []any{"spec", "roles", i, "spec", "leaderWorkerTemplate", "workerTemplate", "spec"})
			}
			return paths
		},
		stackField: []any{"spec"},
	},
	{
		stack: "dynamo", file: "dynamographdeployment.yaml",
		engines: func(obj map[string]any) [][]any {
			var paths [][]any
			for i, c := range at(obj, "spec", "components").([]any) {
				if typ := c.(map[string]any)["type"]; typ == "prefill" || typ == "decode" {
					paths = append(paths, []any{"spec", "components", i, "podTemplate", "spec"})
				}
			}
			return paths
		},
		stackField: []any{"spec", "experimental", "kvTransferPolicy"},
	},
}

// at returns the value at path (map keys and list indices) in obj, or nil.
func at(obj any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := obj.(map[string]any)
			if !ok {
				return nil
			}
			obj = m[k]
		case int:
			l, ok := obj.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			obj = l[k]
		}
	}
	return obj
}

func pathString(path []any) string {
	parts := make([]string, len(path))
	for i, p := range path {
		if n, ok := p.(int); ok {
			parts[i] = fmt.Sprintf("[%d]", n)
		} else {
			parts[i] = "." + p.(string)
		}
	}
	return strings.TrimPrefix(strings.Join(parts, ""), ".")
}

// readExample decodes the one object of an example file.
func readExample(t *testing.T, stack, file string) *unstructured.Unstructured {
	t.Helper()
	path := filepath.Join(controlplane.RepoRoot(), "manifests", "examples", stack, file)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &unstructured.Unstructured{Object: obj}
}

// TestServingStackExamples creates each worked example of
// manifests/examples/<stack>/ in an apiserver that serves the stack's own
// CRD, with strict field validation: a field the stack's schema does not
// know fails, in the stack's fields and in the engines' pod specs, and the
// engines' schedulerName survives the schema's pruning. llm-d's example is
// Helm values, checked against its chart's values schema.
func TestServingStackExamples(t *testing.T) {
	dir := stackSchemaDir(t)
	cp := controlplane.StartControlPlane(t)
	ctx := context.Background()
	for _, f := range stackSchemas {
		if strings.HasSuffix(f, ".yaml") {
			installStackCRD(t, cp, filepath.Join(dir, f))
		}
	}
	ap := newManifestApplier(t, cp.Config)

	for _, ex := range stackExamples {
		t.Run(ex.stack, func(t *testing.T) {
			obj := readExample(t, ex.stack, ex.file)
			engines := ex.engines(obj.Object)
			if len(engines) < 2 {
				t.Fatalf("%s: %d engine pod specs, want a prefill and a decode at least", ex.file, len(engines))
			}
			// Discovery may serve an established CRD a moment later.
			gvk := obj.GroupVersionKind()
			var mapping *meta.RESTMapping
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
				var err error
				if mapping, err = ap.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); meta.IsNoMatchError(err) {
					ap.mapper.Reset()
					return false, nil
				}
				return err == nil, err
			})
			if err != nil {
				t.Fatalf("the apiserver serves no %s: %v", gvk, err)
			}
			if err := ap.applyOne(ctx, obj); err != nil {
				t.Fatalf("creating %s %s from %s: %v", obj.GetKind(), obj.GetName(), ex.file, err)
			}
			served, err := ap.dyn.Resource(mapping.Resource).Namespace(namespace).Get(ctx, obj.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range engines {
				if got := at(served.Object, append(slices.Clone(p), "schedulerName")...); got != "tandem-scheduler" {
					t.Errorf("%s: the apiserver holds %s.schedulerName = %v, want tandem-scheduler", ex.file, pathString(p), got)
				}
			}

			// A misspelt field fails, wherever it is.
			for _, p := range [][]any{ex.stackField, engines[0], engines[len(engines)-1]} {
				typo := obj.DeepCopy()
				typo.SetName(obj.GetName() + "-typo")
				target, ok := at(typo.Object, p...).(map[string]any)
				if !ok {
					t.Fatalf("%s: no object at %s", ex.file, pathString(p))
				}
				target["schedulerNmae"] = "tandem-scheduler"
				err := ap.applyOne(ctx, typo)
				// Server-side apply refuses it while typing the patch, before
				// strict field validation would.
				if err == nil || !strings.Contains(err.Error(), ".schedulerNmae") ||
					!strings.Contains(err.Error(), "field not declared in schema") && !strings.Contains(err.Error(), "unknown field") {
					t.Errorf("%s with an unknown field at %s: got %v, want an error naming the field", ex.file, pathString(p), err)
				}
			}
		})
	}

	t.Run("llm-d", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(dir, "llm-d", "values.schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		schema := &spec.Schema{}
		if err := json.Unmarshal(raw, schema); err != nil {
			t.Fatalf("llm-d-modelservice values.schema.json: %v", err)
		}
		values := readExample(t, "llm-d", "values.yaml").Object
		if err := checkModelServiceValues(schema, values); err != nil {
			t.Fatalf("manifests/examples/llm-d/values.yaml: %v", err)
		}
		if values["schedulerName"] != "tandem-scheduler" {
			t.Errorf("schedulerName = %v, want tandem-scheduler", values["schedulerName"])
		}
		labels, _ := at(values, "modelArtifacts", "labels").(map[string]any)
		if labels["llm-d.ai/model"] == nil {
			t.Errorf("modelArtifacts.labels %v: no llm-d.ai/model, so tandem would group by namespace", labels)
		}
		for _, tc := range []struct {
			name   string
			mutate func(map[string]any)
		}{
			{"a misspelt top-level value", func(v map[string]any) { v["schedulerNmae"] = v["schedulerName"]; delete(v, "schedulerName") }},
			{"a misspelt parallelism", func(v map[string]any) { at(v, "decode", "parallelism").(map[string]any)["tensr"] = 4 }},
			{"a mistyped model label map", func(v map[string]any) { at(v, "modelArtifacts").(map[string]any)["labels"] = "llm-d.ai/model" }},
		} {
			bad := readExample(t, "llm-d", "values.yaml").Object
			tc.mutate(bad)
			if err := checkModelServiceValues(schema, bad); err == nil {
				t.Errorf("values with %s accepted", tc.name)
			}
		}
	})
}

// installStackCRD creates the CRD in file as upstream ships it, less its
// conversion webhook: no operator runs here to serve it, and the examples
// are written in each CRD's storage version, which needs no conversion.
func installStackCRD(t *testing.T, cp *controlplane.ControlPlane, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.NoneConverter}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := controlplane.CreateCRD(ctx, apiextensionsclient.NewForConfigOrDie(cp.Config), crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// checkModelServiceValues validates Helm values against the
// llm-d-modelservice chart's schema, and every top-level key against the
// keys the schema declares: its root allows any key, so a misspelt one would
// pass it silently. schedulerName is read by the chart's templates
// (_helpers.tpl) but not declared in its schema.
func checkModelServiceValues(schema *spec.Schema, values map[string]any) error {
	res := validate.NewSchemaValidator(schema, nil, "", strfmt.Default).Validate(values)
	if !res.IsValid() {
		return fmt.Errorf("the chart's schema rejects the values: %v", res.Errors)
	}
	for key := range values {
		if _, ok := schema.Properties[key]; !ok && key != "schedulerName" {
			return fmt.Errorf("top-level value %q is not one the chart declares", key)
		}
	}
	return nil
}

// AIBrix with its coscheduling strategy: every pod of a RoleSet carries the
// RoleSet's name in roleset-name and in the PodGroup label, and the RoleSet
// controller makes the PodGroup. Stripped of role-name, roleset-name and
// storm-service-name the pods keep their PodGroups, so the control is
// placed all or nothing too, but not as P/D pairs.
func TestAIBrixStormServicePairsWithinTheRoleSet(t *testing.T) {
	const svc = "qwen3-8b-pd"
	roleSets := []string{svc + "-6f9c4", svc + "-b27d1", svc + "-0a5e8", svc + "-d413f"}
	pod := func(rs, role string) stackPod {
		return stackPod{
			name: rs + "-" + role + "-7d9f6c8b5-0", prefill: role == "prefill", pairWith: rs,
			labels: map[string]string{
				"role-name": role, "roleset-name": rs, "storm-service-name": svc,
				"role-template-hash": "7d9f6c8b5", "stormservice.orchestration.aibrix.ai/role-replica-index": "0",
				pdaffinity.LabelPodGroup: rs,
				"model.aibrix.ai/name":   "qwen3-8b", "model.aibrix.ai/port": "8000", "model.aibrix.ai/engine": "vllm",
			},
		}
	}
	// Every prefill first, then the decodes in the reverse order, so that a
	// placement blind to the pairs does not pair them by the queue's order.
	var pods []stackPod
	groups := map[string]int32{}
	for _, rs := range roleSets {
		pods = append(pods, pod(rs, "prefill"))
		groups[rs] = 2
	}
	for i := len(roleSets) - 1; i >= 0; i-- {
		pods = append(pods, pod(roleSets[i], "decode"))
	}
	wantOptimum(t, comparePlacementWithGroups(t, pods, []string{"role-name", "roleset-name", "storm-service-name"}, groups))
}

// Dynamo on its Deployment pathway: two graphs, each a pool of two TP=4
// prefill and two TP=4 decode workers, grouped by the graph's name.
func TestDynamoPairsWithinTheGraphDeployment(t *testing.T) {
	var pods []stackPod
	pod := func(graph, role string, i int) stackPod {
		component := map[string]string{"prefill": "VllmPrefillWorker", "decode": "VllmDecodeWorker"}[role]
		return stackPod{
			name: fmt.Sprintf("%s-%s-5c7d9-%d", graph, strings.ToLower(component), i), prefill: role == "prefill", pairWith: graph,
			labels: map[string]string{
				"nvidia.com/dynamo-component-type": role, "nvidia.com/dynamo-graph-deployment-name": graph,
				"nvidia.com/dynamo-component": component, "nvidia.com/dynamo-namespace": "default-" + graph,
				"nvidia.com/dynamo-component-pod": "true",
			},
		}
	}
	graphs := []string{"qwen3-8b-pd", "llama-8b-pd"}
	for _, g := range graphs {
		for i := range 2 {
			pods = append(pods, pod(g, "prefill", i))
		}
	}
	for _, g := range slices.Backward(graphs) {
		for i := range 2 {
			pods = append(pods, pod(g, "decode", 1-i))
		}
	}
	wantOptimum(t, comparePlacementWithGroups(t, pods, []string{"nvidia.com/dynamo-component-type", "nvidia.com/dynamo-graph-deployment-name"}, nil))
}

// An LWS DisaggregatedSet on its own: the set's name, role and slice, and
// the LeaderWorkerSet's labels, nothing of llm-d's.
func TestLWSDisaggregatedSetPairsWithinTheSlice(t *testing.T) {
	hashes := map[string][]string{
		"prefill": {"6c1f", "9a0d", "1b7e", "3e52"},
		"decode":  {"8d21", "0f4a", "c93b", "5b06"},
	}
	pod := func(slice int, role string) stackPod {
		s := fmt.Sprint(slice)
		return stackPod{
			name: fmt.Sprintf("llama-8b-pd-%s-%s-0", role, hashes[role][slice]), prefill: role == "prefill", pairWith: s,
			labels: map[string]string{
				"disaggregatedset.x-k8s.io/name": "llama-8b-pd", "disaggregatedset.x-k8s.io/role": role,
				"disaggregatedset.x-k8s.io/slice":  s,
				"leaderworkerset.sigs.k8s.io/name": fmt.Sprintf("llama-8b-pd-%d-%s", slice, role), "leaderworkerset.sigs.k8s.io/worker-index": "0",
			},
		}
	}
	var pods []stackPod
	for slice := range 4 {
		pods = append(pods, pod(slice, "prefill"))
	}
	for slice := 3; slice >= 0; slice-- {
		pods = append(pods, pod(slice, "decode"))
	}
	wantOptimum(t, comparePlacementWithGroups(t, pods, []string{"disaggregatedset.x-k8s.io/role", "disaggregatedset.x-k8s.io/name", "disaggregatedset.x-k8s.io/slice"}, nil))
}
