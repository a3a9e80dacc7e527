// Package validation checks tandem's plugin args. The scheduler calls it from
// each plugin's constructor, so an invalid value stops the scheduler at
// start-up with an error that names the field.
package validation

import (
	"fmt"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tandem-sched/tandem/apis/config"
	"github.com/tandem-sched/tandem/pkg/topology"
)

var (
	islandPolicies   = []string{string(config.IslandRequired), string(config.IslandPreferred), string(config.IslandIgnore)}
	pcieLevels       = []string{"PIX", "PXB", "PHB", "NODE", "SYS"}
	sameNodePolicies = []string{string(config.SameNodePrefer), string(config.SameNodeAllow), string(config.SameNodeForbid)}
)

// maxScoreWeight keeps a weighted sum of [0, 100] scores far from overflow.
const maxScoreWeight = 100

// ValidateNVLinkTopoArgs validates NVLinkTopoArgs; path is where the args sit
// in the scheduler configuration.
func ValidateNVLinkTopoArgs(path *field.Path, args *config.NVLinkTopoArgs) error {
	var errs field.ErrorList
	errs = append(errs, validateResourceName(path.Child("gpuResourceName"), args.GPUResourceName)...)
	seen := sets.New[string]()
	for i, name := range args.RDMAResourceNames {
		p := path.Child("rdmaResourceNames").Index(i)
		errs = append(errs, validateResourceName(p, name)...)
		if seen.Has(name) {
			errs = append(errs, field.Duplicate(p, name))
		}
		seen.Insert(name)
		if name == args.GPUResourceName {
			errs = append(errs, field.Invalid(p, name, "must differ from gpuResourceName"))
		}
	}
	if !sets.New(islandPolicies...).Has(string(args.IslandPolicy)) {
		errs = append(errs, field.NotSupported(path.Child("islandPolicy"), args.IslandPolicy, islandPolicies))
	}
	if !sets.New(pcieLevels...).Has(string(args.MaxPCIeLevel)) {
		errs = append(errs, field.NotSupported(path.Child("maxPCIeLevel"), args.MaxPCIeLevel, pcieLevels))
	}
	classes, classErrs := deviceClassNames(path.Child("draDeviceClassNames"), args.DRADeviceClassNames, nil)
	_, rdmaErrs := deviceClassNames(path.Child("draRDMADeviceClassNames"), args.DRARDMADeviceClassNames, classes)
	errs = append(append(errs, classErrs...), rdmaErrs...)
	if len(args.DRADeviceClassNames) > 0 {
		for _, msg := range utilvalidation.IsDNS1123Subdomain(args.DRADriverName) {
			errs = append(errs, field.Invalid(path.Child("draDriverName"), args.DRADriverName, msg))
		}
	}
	if args.MaxTopologyAge.Duration <= 0 {
		errs = append(errs, field.Invalid(path.Child("maxTopologyAge"), args.MaxTopologyAge.Duration.String(), "must be greater than zero"))
	}
	w := args.ScoreWeights
	weights := path.Child("scoreWeights")
	inRange := true
	for _, f := range []struct {
		name  string
		value int32
	}{{"islandFit", w.IslandFit}, {"nicProximity", w.NICProximity}, {"nicBandwidth", w.NICBandwidth}} {
		if f.value < 0 || f.value > maxScoreWeight {
			errs = append(errs, field.Invalid(weights.Child(f.name), f.value, fmt.Sprintf("must be between 0 and %d", maxScoreWeight)))
			inRange = false
		}
	}
	if inRange && w.IslandFit+w.NICProximity+w.NICBandwidth == 0 {
		errs = append(errs, field.Invalid(weights, w, "at least one weight must be greater than zero"))
	}
	return errs.ToAggregate()
}

func validateResourceName(path *field.Path, name string) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(path, "")}
	}
	var errs field.ErrorList
	for _, msg := range utilvalidation.IsQualifiedName(name) {
		errs = append(errs, field.Invalid(path, name, msg))
	}
	return errs
}

// ValidatePDAffinityArgs validates PDAffinityArgs; path is where the args sit
// in the scheduler configuration.
func ValidatePDAffinityArgs(path *field.Path, args *config.PDAffinityArgs) error {
	var errs field.ErrorList
	switch {
	case args.LevelPreset != "" && len(args.Levels) > 0:
		errs = append(errs, field.Forbidden(path.Child("levelPreset"), "levelPreset and levels are mutually exclusive; set one"))
	case args.LevelPreset != "":
		if _, err := topology.PresetLevels(args.LevelPreset); err != nil {
			errs = append(errs, field.NotSupported(path.Child("levelPreset"), args.LevelPreset, topology.PresetNames()))
		}
	case len(args.Levels) == 0:
		errs = append(errs, field.Required(path.Child("levels"), "set levels or levelPreset"))
	default:
		errs = append(errs, validateLevels(path.Child("levels"), args)...)
	}
	if !sets.New(sameNodePolicies...).Has(string(args.SameNode)) {
		errs = append(errs, field.NotSupported(path.Child("sameNode"), args.SameNode, sameNodePolicies))
	}
	errs = append(errs, validateResourceName(path.Child("gpuResourceName"), args.GPUResourceName)...)
	return errs.ToAggregate()
}

func validateLevels(path *field.Path, args *config.PDAffinityArgs) field.ErrorList {
	var errs field.ErrorList
	for i, l := range args.Levels {
		if bw := l.Bandwidth.AsApproximateFloat64(); bw <= 0 || math.IsInf(bw, 0) {
			errs = append(errs, field.Invalid(path.Index(i).Child("bandwidth"), l.Bandwidth.String(), "must be a positive number of bytes per second"))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	levels, err := args.ResolvedLevels()
	if err == nil {
		err = levels.Validate()
	}
	if err != nil {
		// The model names the offending level in its error.
		errs = append(errs, field.Invalid(path, len(args.Levels), err.Error()))
	}
	return errs
}

// maxPermitWait is the longest the scheduler lets a pod wait at Permit;
// kube-scheduler cuts a longer wait to this without saying so.
const maxPermitWait = 15 * time.Minute

// ValidateGangArgs validates GangArgs; path is where the args sit in the
// scheduler configuration.
func ValidateGangArgs(path *field.Path, args *config.GangArgs) error {
	var errs field.ErrorList
	if w := args.PermitWaitingTimeSeconds; w <= 0 || w > int64(maxPermitWait/time.Second) {
		errs = append(errs, field.Invalid(path.Child("permitWaitingTimeSeconds"), w,
			fmt.Sprintf("must be between 1 and %d (kube-scheduler waits at most %s at Permit)", int64(maxPermitWait/time.Second), maxPermitWait)))
	}
	if args.PodGroupBackoffSeconds < 0 {
		errs = append(errs, field.Invalid(path.Child("podGroupBackoffSeconds"), args.PodGroupBackoffSeconds, "must not be negative"))
	}
	if p := args.PodGroupRejectPercentage; p < 0 || p > 100 {
		errs = append(errs, field.Invalid(path.Child("podGroupRejectPercentage"), p, "must be between 0 and 100"))
	}
	return errs.ToAggregate()
}

// deviceClassNames checks a list of DeviceClass names: each a DNS
// subdomain, none twice, none in taken (another list's). It returns the
// names as a set.
func deviceClassNames(path *field.Path, names []string, taken sets.Set[string]) (sets.Set[string], field.ErrorList) {
	var errs field.ErrorList
	seen := sets.New[string]()
	for i, name := range names {
		p := path.Index(i)
		for _, msg := range utilvalidation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(p, name, msg))
		}
		switch {
		case seen.Has(name):
			errs = append(errs, field.Duplicate(p, name))
		case taken.Has(name):
			errs = append(errs, field.Invalid(p, name, "is also in draDeviceClassNames: a class is either GPUs or RDMA NICs"))
		}
		seen.Insert(name)
	}
	return seen, errs
}
