// Package bench is the pure part of tandem's placement benchmark: the
// workload description, the generated clusters, the quality of a placement
// (path classes, modeled KV-transfer time, stranded GPUs), quantiles from
// scheduler histograms, and the offline optimum for small instances. The
// control-plane runner that uses it is pkg/bench/run.
package bench

import (
	"fmt"
	"math"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// Mode is how an instance's pods exchange KV caches.
type Mode string

const (
	// ModeReplica is one fixed xPyD unit, placed all-or-nothing (a PodGroup).
	ModeReplica Mode = "replica"
	// ModePool is a prefill pool and a decode pool that scale apart; any
	// prefill of the pool may serve any of its decodes.
	ModePool Mode = "pool"
)

// ModelLlama3_70B_BF16 is the model preset whose KV cache is 320 KiB per token.
const ModelLlama3_70B_BF16 = "llama-3-70b-bf16"

// Workload is a set of disaggregated serving instances and the request shape
// their KV transfers are priced for.
type Workload struct {
	// Model is a preset KV shape: llama-3-70b-bf16 (the default). Ignored
	// when KVBytesPerToken is set.
	Model string `json:"model,omitempty"`
	// KVBytesPerToken overrides the model preset.
	KVBytesPerToken int64 `json:"kvBytesPerToken,omitempty"`
	// PromptTokens is the prompt length of one request; default 4096.
	PromptTokens int `json:"promptTokens,omitempty"`
	// Fill, when set, scales every unit's count so that the workload asks for
	// about this share of the cluster's free GPUs (those no other tenant
	// holds); the counts give the mix.
	Fill float64 `json:"fill,omitempty"`
	// Units are the kinds of instance, created in this order.
	Units []Unit `json:"units"`
}

// Unit is Count identical instances named Name-0, Name-1, ...
type Unit struct {
	Name    string `json:"name"`
	Count   int    `json:"count,omitempty"`
	Mode    Mode   `json:"mode,omitempty"`
	Prefill Engine `json:"prefill"`
	Decode  Engine `json:"decode"`
}

// Engine is one role's pods in an instance: Replicas pods of GPUs GPUs each
// (the engine's tensor-parallel size).
type Engine struct {
	Replicas int `json:"replicas"`
	GPUs     int `json:"gpus"`
}

// ParseWorkload reads a workload description in YAML, rejecting unknown
// fields, applies the defaults and validates it.
func ParseWorkload(data []byte) (*Workload, error) {
	w := &Workload{}
	if err := yaml.UnmarshalStrict(data, w); err != nil {
		return nil, fmt.Errorf("workload description: %w", err)
	}
	w.Default()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return w, nil
}

// Default fills in the optional fields.
func (w *Workload) Default() {
	if w.Model == "" && w.KVBytesPerToken == 0 {
		w.Model = ModelLlama3_70B_BF16
	}
	if w.PromptTokens == 0 {
		w.PromptTokens = 4096
	}
	for i := range w.Units {
		if w.Units[i].Count == 0 {
			w.Units[i].Count = 1
		}
		if w.Units[i].Mode == "" {
			w.Units[i].Mode = ModeReplica
		}
	}
}

// Validate names every field at fault.
func (w *Workload) Validate() error {
	var errs field.ErrorList
	if w.KVBytesPerToken < 0 {
		errs = append(errs, field.Invalid(field.NewPath("kvBytesPerToken"), w.KVBytesPerToken, "must be positive"))
	}
	if w.KVBytesPerToken == 0 && w.Model != ModelLlama3_70B_BF16 {
		errs = append(errs, field.NotSupported(field.NewPath("model"), w.Model, []string{ModelLlama3_70B_BF16}))
	}
	if w.PromptTokens < 0 {
		errs = append(errs, field.Invalid(field.NewPath("promptTokens"), w.PromptTokens, "must be positive"))
	}
	if w.Fill < 0 || w.Fill > 1 || math.IsNaN(w.Fill) {
		errs = append(errs, field.Invalid(field.NewPath("fill"), w.Fill, "must be a share of the cluster's GPUs, between 0 and 1"))
	}
	root := field.NewPath("units")
	if len(w.Units) == 0 {
		errs = append(errs, field.Required(root, "a workload needs at least one unit"))
	}
	names := map[string]bool{}
	for i, u := range w.Units {
		p := root.Index(i)
		// Pod names are <name>-<i>-<role>-<j>, and the instance name is a label value.
		for _, msg := range validation.IsDNS1123Label(u.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), u.Name, msg))
		}
		if len(u.Name) > 40 {
			errs = append(errs, field.TooLong(p.Child("name"), u.Name, 40))
		}
		if names[u.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), u.Name))
		}
		names[u.Name] = true
		if u.Count < 0 {
			errs = append(errs, field.Invalid(p.Child("count"), u.Count, "must not be negative"))
		}
		switch u.Mode {
		case ModeReplica, ModePool:
		default:
			errs = append(errs, field.NotSupported(p.Child("mode"), u.Mode, []Mode{ModeReplica, ModePool}))
		}
		for _, e := range []struct {
			name string
			e    Engine
		}{{"prefill", u.Prefill}, {"decode", u.Decode}} {
			if e.e.Replicas < 1 {
				errs = append(errs, field.Invalid(p.Child(e.name, "replicas"), e.e.Replicas, "must be at least 1"))
			}
			if e.e.GPUs < 1 {
				errs = append(errs, field.Invalid(p.Child(e.name, "gpus"), e.e.GPUs, "must be at least 1"))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("workload description: %w", errs.ToAggregate())
	}
	return nil
}

// BytesPerToken is the KV cache of one token.
func (w *Workload) BytesPerToken() int64 {
	if w.KVBytesPerToken > 0 {
		return w.KVBytesPerToken
	}
	return topology.Llama3_70B_BF16().BytesPerToken()
}

// KVBytes is the KV cache one request moves from prefill to decode.
func (w *Workload) KVBytes() float64 {
	return float64(w.PromptTokens) * float64(w.BytesPerToken())
}

// GPUs is what one instance of the unit asks for.
func (u Unit) GPUs() int {
	return u.Prefill.Replicas*u.Prefill.GPUs + u.Decode.Replicas*u.Decode.GPUs
}

// GPUs is what the whole workload asks for.
func (w *Workload) GPUs() int {
	total := 0
	for _, u := range w.Units {
		total += u.Count * u.GPUs()
	}
	return total
}

// SmallestEngine is the fewest GPUs any engine of the workload needs: free
// GPUs that cannot host it are stranded.
func (w *Workload) SmallestEngine() int {
	smallest := 0
	for _, u := range w.Units {
		for _, g := range []int{u.Prefill.GPUs, u.Decode.GPUs} {
			if smallest == 0 || g < smallest {
				smallest = g
			}
		}
	}
	return max(smallest, 1)
}

// Scaled returns a copy whose counts are scaled so that it asks for about
// Fill of freeGPUs, the GPUs no other tenant holds; without Fill, an
// unchanged copy. Every unit keeps at least one instance.
func (w *Workload) Scaled(freeGPUs int) *Workload {
	out := *w
	out.Units = append([]Unit(nil), w.Units...)
	if w.Fill == 0 || w.GPUs() == 0 {
		return &out
	}
	factor := w.Fill * float64(freeGPUs) / float64(w.GPUs())
	for i := range out.Units {
		out.Units[i].Count = max(1, int(math.Floor(float64(out.Units[i].Count)*factor)))
	}
	out.Fill = 0
	return &out
}

// Instance is one xPyD unit or one pool.
type Instance struct {
	Name string
	Unit Unit
}

// Instances lists every instance in creation order.
func (w *Workload) Instances() []Instance {
	var out []Instance
	for _, u := range w.Units {
		for i := 0; i < u.Count; i++ {
			out = append(out, Instance{Name: fmt.Sprintf("%s-%d", u.Name, i), Unit: u})
		}
	}
	return out
}

// Pairs is how many prefill→decode pairs the instance's KV transfers are
// priced over: every pair of a replica unit (its proxy sends requests
// through all of them), or each decode of a pool with its nearest prefill
// (the router can pair a decode with the prefill beside it).
func (in Instance) Pairs() int {
	if in.Unit.Mode == ModePool {
		return in.Unit.Decode.Replicas
	}
	return in.Unit.Prefill.Replicas * in.Unit.Decode.Replicas
}

// Pods is the instance's pods, prefills first.
func (in Instance) Pods() []Pod {
	var out []Pod
	for _, r := range []struct {
		role Role
		e    Engine
	}{{RolePrefill, in.Unit.Prefill}, {RoleDecode, in.Unit.Decode}} {
		for j := 0; j < r.e.Replicas; j++ {
			out = append(out, Pod{Name: fmt.Sprintf("%s-%s-%d", in.Name, r.role, j), Instance: in.Name, Role: r.role, GPUs: r.e.GPUs, Pool: in.Unit.Mode == ModePool})
		}
	}
	return out
}

// String summarises the workload on one line.
func (w *Workload) String() string {
	var parts []string
	for _, u := range w.Units {
		parts = append(parts, fmt.Sprintf("%d× %s %dP%dD (TP %d/%d, %s)", u.Count, u.Name, u.Prefill.Replicas, u.Decode.Replicas, u.Prefill.GPUs, u.Decode.GPUs, u.Mode))
	}
	return strings.Join(parts, ", ")
}
