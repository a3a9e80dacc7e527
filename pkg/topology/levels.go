package topology

import (
	"errors"
	"fmt"
	"math"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Node label keys tandem understands. The tandem agent writes the tandem.dev
// ones; LabelZone is the well-known label the cloud provider sets.
const (
	LabelZone         = "topology.kubernetes.io/zone"
	LabelSpine        = "tandem.dev/spine"
	LabelLeaf         = "tandem.dev/leaf"
	LabelNVLinkDomain = "tandem.dev/nvlink-domain"
	// LabelGPUDirectRDMA is "true" on a node whose NICs can read and write GPU
	// memory directly. It is not a level: it does not group nodes, it only
	// says whether a transfer must bounce through host memory.
	LabelGPUDirectRDMA = "tandem.dev/gpudirect-rdma"
)

// Level names used by the built-in level lists. LevelNVLinkDomain is the one
// the model treats specially: a pair sharing it never touches a NIC, so
// GPUDirect RDMA does not matter to it.
const (
	LevelZone         = "zone"
	LevelSpine        = "spine"
	LevelLeaf         = "leaf"
	LevelNVLinkDomain = "nvlink-domain"
)

// Per-stream bandwidths, in bytes per second, the built-in level lists assume.
// Every preset uses the same ones so that a path class costs the same
// whichever labels it was read from.
const (
	zoneBandwidth = 12.5e9
	// A spine is shared and typically 2:1 oversubscribed, so a stream
	// crossing it gets half of what it gets within a leaf.
	spineBandwidth = 25e9
	// One 400G NIC with GPUDirect RDMA.
	leafBandwidth = 50e9
	// NVLink per direction on HGX H100 and GB200 NVL72.
	nvlinkBandwidth = 450e9
)

// Level is one level of the topology hierarchy.
type Level struct {
	// Name is a short name such as "zone", "spine", "leaf" or "nvlink-domain".
	// It doubles as the PathClass of pairs whose finest shared level this is.
	Name string
	// Key is the node label key that holds the node's domain at this level.
	Key string
	// Bandwidth is the per-stream KV-transfer bandwidth, in bytes per second,
	// the cost model assumes when this is the finest level two nodes share.
	Bandwidth float64
	// Global says the level's label values are unique across the cluster,
	// so two nodes with the same value share the domain whatever their
	// coarser levels say. An NVLink domain is global: the trays of one NVL72
	// rack are one domain even when their NICs hang off different leaves.
	// A level that is not global is matched under its coarser levels, as
	// Kueue matches a leaf only under its spine.
	Global bool
}

// Levels is a topology hierarchy ordered coarse to fine, the order Kueue's
// and KAI's Topology CRDs use.
type Levels []Level

// DefaultLevels returns the hierarchy tandem's own agent labels nodes for.
func DefaultLevels() Levels {
	return Levels{
		{Name: LevelZone, Key: LabelZone, Bandwidth: zoneBandwidth},
		{Name: LevelSpine, Key: LabelSpine, Bandwidth: spineBandwidth},
		{Name: LevelLeaf, Key: LabelLeaf, Bandwidth: leafBandwidth},
		{Name: LevelNVLinkDomain, Key: LabelNVLinkDomain, Bandwidth: nvlinkBandwidth, Global: true},
	}
}

// Index returns the position of the level called name.
func (l Levels) Index(name string) (int, bool) {
	for i := range l {
		if l[i].Name == name {
			return i, true
		}
	}
	return -1, false
}

// Validate reports every problem with the hierarchy, each naming the level by
// index and name.
func (l Levels) Validate() error {
	if len(l) == 0 {
		return errors.New("levels: at least one level is required")
	}
	var errs []error
	names := make(map[string]int, len(l))
	keys := make(map[string]int, len(l))
	for i, lv := range l {
		where := l.describe(i)
		switch {
		case lv.Name == "":
			errs = append(errs, fmt.Errorf("%s: name is required", where))
		case lv.Name == string(PathNone) || lv.Name == string(PathHostBounce):
			// A level with a reserved name would make its class
			// indistinguishable from the model's own classes.
			errs = append(errs, fmt.Errorf("%s: name %q is reserved for a path class", where, lv.Name))
		default:
			if j, dup := names[lv.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: name duplicates %s", where, l.describe(j)))
			} else {
				names[lv.Name] = i
			}
		}

		if lv.Key == "" {
			errs = append(errs, fmt.Errorf("%s: key is required", where))
		} else {
			for _, msg := range validation.IsQualifiedName(lv.Key) {
				errs = append(errs, fmt.Errorf("%s: key %q is not a valid label key: %s", where, lv.Key, msg))
			}
			if j, dup := keys[lv.Key]; dup {
				errs = append(errs, fmt.Errorf("%s: key %q duplicates %s", where, lv.Key, l.describe(j)))
			} else {
				keys[lv.Key] = i
			}
		}

		if !validBandwidth(lv.Bandwidth) {
			errs = append(errs, fmt.Errorf("%s: bandwidth %g must be a positive, finite number of bytes per second", where, lv.Bandwidth))
		} else if i > 0 && validBandwidth(l[i-1].Bandwidth) && lv.Bandwidth < l[i-1].Bandwidth {
			errs = append(errs, fmt.Errorf("%s: bandwidth %g is lower than %s %g; a finer level cannot be slower",
				where, lv.Bandwidth, l.describe(i-1), l[i-1].Bandwidth))
		}
	}
	return errors.Join(errs...)
}

// describe names level i the way validation errors do: levels[2] (leaf).
func (l Levels) describe(i int) string {
	if l[i].Name == "" {
		return fmt.Sprintf("levels[%d]", i)
	}
	return fmt.Sprintf("levels[%d] (%s)", i, l[i].Name)
}

func validBandwidth(bw float64) bool {
	// Written so that NaN fails too.
	return bw > 0 && !math.IsInf(bw, 1)
}
