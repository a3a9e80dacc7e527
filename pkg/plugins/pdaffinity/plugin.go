// Package pdaffinity is the scheduler plugin that places each decode pod where
// the KV cache from its prefill travels the fastest path, and each prefill
// near its decodes, over every topology level at once: NVLink domain, leaf,
// spine, zone. It handles fixed xPyD units (replica mode) and prefill and
// decode pools that scale apart (pool mode).
package pdaffinity

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/cache"
	fwk "k8s.io/kube-scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/apis/config/validation"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Name is the plugin's name in the scheduler configuration.
const Name = "PDAffinity"

const preFilterStateKey fwk.StateKey = "PreFilter" + Name

// Pod annotations.
const (
	// AnnotationRequiredLevel makes locality hard for one pod: a level name
	// (e.g. leaf) the pod must share with its group's placed pods.
	AnnotationRequiredLevel = "tandem.dev/required-level"
	// AnnotationPDRatio sets a pool's target prefill:decode ratio, e.g. "1:2".
	AnnotationPDRatio = "tandem.dev/pd-ratio"
)

var (
	_ fwk.PreFilterPlugin   = &PDAffinity{}
	_ fwk.FilterPlugin      = &PDAffinity{}
	_ fwk.PreScorePlugin    = &PDAffinity{}
	_ fwk.ScorePlugin       = &PDAffinity{}
	_ fwk.ReservePlugin     = &PDAffinity{}
	_ fwk.BindPlugin        = &PDAffinity{}
	_ fwk.PostBindPlugin    = &PDAffinity{}
	_ fwk.EnqueueExtensions = &PDAffinity{}
)

// PDAffinity places prefill and decode pods of one group close together.
type PDAffinity struct {
	args         config.PDAffinityArgs
	levels       topology.Levels
	model        topology.CostModel
	gpuResource  v1.ResourceName
	balanceLevel int
	// nvlinkLevel is the index of the nvlink-domain level, or -1.
	nvlinkLevel int
	members     *memberReader
	paths       *pathCache
	handle      fwk.Handle
	podGroups   pglisters.PodGroupLister
	// src and domains are the shared placement model; nil in New, which
	// then places each pod on its own, without plans.
	src     *topologysource.Source
	domains *topology.DomainIndex
	plans   *unitPlans
	assumed *assumedPods
	pairs   *pairBook
}

// NewFactory returns the plugin factory the scheduler registers; PodGroups,
// which size xPyD units, are read through src.
func NewFactory(src *topologysource.Source) frameworkruntime.PluginFactory {
	return func(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		pl, err := newPlugin(obj, h)
		if err != nil {
			return nil, err
		}
		if pl.podGroups, err = src.PodGroups(ctx, h.KubeConfig()); err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		cluster, err := src.Model(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		pl.src, pl.domains = src, cluster.Domains(pl.levels)
		registerMetrics(pl.levels)
		if _, err := h.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj interface{}) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if pod, ok := obj.(*v1.Pod); ok {
					pl.assumed.remove(pod.UID)
					pl.pairs.forget(pod.UID)
				}
			},
		}); err != nil {
			return nil, fmt.Errorf("%s: watching pod deletions: %w", Name, err)
		}
		return pl, nil
	}
}

// New builds the plugin without PodGroup sizes: units are sized by the
// tandem.dev/unit-size label alone.
func New(_ context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	return newPlugin(obj, h)
}

func newPlugin(obj runtime.Object, h fwk.Handle) (*PDAffinity, error) {
	args, ok := obj.(*config.PDAffinityArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type PDAffinityArgs, got %T", Name, obj)
	}
	path := field.NewPath("pluginConfig").Key(Name).Child("args")
	if err := validation.ValidatePDAffinityArgs(path, args); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	levels, err := args.ResolvedLevels()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	presets := args.LabelPresets
	if presets == nil {
		presets = LabelPresetNames()
	}
	for i, name := range presets {
		if _, ok := labelPresets[name]; !ok {
			return nil, fmt.Errorf("%s: %w", Name, field.NotSupported(path.Child("labelPresets").Index(i), name, LabelPresetNames()))
		}
	}
	members, err := newMemberReader(presets)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	model := topology.DefaultCostModel()
	model.Levels = levels
	pl := &PDAffinity{
		args:         *args,
		levels:       levels,
		model:        model,
		gpuResource:  v1.ResourceName(args.GPUResourceName),
		balanceLevel: balanceLevel(levels),
		nvlinkLevel:  nvlinkLevel(levels),
		members:      members,
		paths:        newPathCache(levels),
		handle:       h,
		plans:        newUnitPlans(),
		assumed:      newAssumedPods(),
		pairs:        newPairBook(),
	}
	if h != nil {
		if err := pl.indexPodsByGroup(); err != nil {
			return nil, fmt.Errorf("%s: indexing pods by group: %w", Name, err)
		}
	}
	return pl, nil
}

// balanceLevel is where pool mode balances the prefill:decode ratio: the
// leaf when there is one, else the finest level.
func balanceLevel(levels topology.Levels) int {
	if i, ok := levels.Index(topology.LevelLeaf); ok {
		return i
	}
	return len(levels) - 1
}

func nvlinkLevel(levels topology.Levels) int {
	if i, ok := levels.Index(topology.LevelNVLinkDomain); ok {
		return i
	}
	return -1
}

// Name returns the plugin's name.
func (pl *PDAffinity) Name() string { return Name }

type preFilterState struct {
	member Member
	// requiredLevel is the level index the pod must share with its group,
	// or -1.
	requiredLevel int
	// ratio is the pool's target prefill share, in (0, 1).
	ratio float64
	index *groupIndex
	// Filter's reasons for a required level, worded once per cycle so that
	// the pod's event counts nodes per reason instead of listing each one.
	outsideReason, capacityReason string
	// planned is set for a replica unit's pod placed by its unit's plan;
	// index is then nil.
	planned *planned
	// planKey names the plan of the pod's replica unit or pool chunk; it
	// is set for every pod of a unit, planned or not.
	planKey string
}

// Clone returns the state itself. Preemption's dry runs, which clone to add
// and remove pods, do not change a P/D group's placement.
func (s *preFilterState) Clone() fwk.StateData { return s }
