package pdaffinity

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// allHolds is holds by its definition, over every unit: what the open-unit
// index must reproduce.
func allHolds(u *unitPlans, except string) []topology.UnitPod {
	var out []topology.UnitPod
	for key, up := range u.byUnit {
		if key == except || up.plan == nil {
			continue
		}
		for name, node := range up.plan.Nodes {
			if _, reserved := up.reserved[name]; reserved || up.bound.Has(name) || up.attempts[name] > 1 {
				continue
			}
			if pod, ok := up.pods[name]; ok {
				pod.Node = node
				out = append(out, pod)
			}
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// Units are planned, their pods reserved, unreserved and bound (through
// the plugin's own calls), failed and
// replanned in random order, as the scheduler's cycles and binding
// goroutines interleave them; after each step the holds a new plan sees are
// those of every unit, whichever units the index has pruned.
func TestHoldsMatchEveryUnitsPlans(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	pl := &PDAffinity{plans: newUnitPlans()}
	u := pl.plans
	podOf := func(key string) *v1.Pod {
		ns, name, _ := strings.Cut(key, "/")
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	plan := func(key string, size int) {
		up := u.get(key)
		spec := topology.UnitSpec{}
		p := &topology.Plan{Nodes: map[string]string{}}
		for i := range size {
			name := fmt.Sprintf("ns/%s-pod-%d", strings.TrimPrefix(key, "ns/"), i)
			spec.Pods = append(spec.Pods, topology.UnitPod{Name: name, Prefill: i%2 == 0, Request: topology.GPURequest{Count: 1 + i%4}})
			p.Nodes[name] = fmt.Sprintf("node-%d", rng.IntN(20))
		}
		u.setPlan(key, up, p, spec)
	}
	pick := func() (string, *unitPlan, string) {
		keys := make([]string, 0, len(u.byUnit))
		for k, up := range u.byUnit {
			if up.plan != nil {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return "", nil, ""
		}
		sort.Strings(keys)
		k := keys[rng.IntN(len(keys))]
		up := u.byUnit[k]
		names := make([]string, 0, len(up.plan.Nodes))
		for n := range up.plan.Nodes {
			names = append(names, n)
		}
		sort.Strings(names)
		return k, up, names[rng.IntN(len(names))]
	}
	units := 0
	for step := range 4000 {
		switch op := rng.IntN(7); {
		case op == 0 || len(u.byUnit) == 0:
			units++
			plan(fmt.Sprintf("ns/u%d", units), 2+rng.IntN(6))
		case op == 1:
			if k, up, name := pick(); up != nil {
				pl.reservedAt(podOf(name), k, up.plan.Nodes[name])
			}
		case op == 2:
			if k, up, name := pick(); up != nil {
				pl.unreserved(podOf(name), k)
			}
		case op == 3:
			if k, up, name := pick(); up != nil {
				pl.boundIn(podOf(name), k)
			}
		case op == 4:
			if _, up, name := pick(); up != nil {
				up.attempts[name]++
			}
		case op == 5:
			if k, up, _ := pick(); up != nil {
				plan(k, len(up.plan.Nodes))
			}
		case op == 6:
			// A new plan asks for the holds of every unit but its own.
			if k, _, _ := pick(); k != "" {
				if got, want := u.holds(k), allHolds(u, k); !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d: holds(%s) = %v, want %v", step, k, got, want)
				}
			}
		}
		if got, want := u.holds(""), allHolds(u, ""); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: holds = %v, want %v", step, got, want)
		}
	}
	if u.open.Len() > len(u.byUnit) {
		t.Fatalf("%d open units, %d units", u.open.Len(), len(u.byUnit))
	}
}
