package leaf

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// EKSLayerPrefix is the EC2 instance-topology label prefix; layer 1 is the
// network node farthest from the instance.
const EKSLayerPrefix = "topology.k8s.aws/network-node-layer-"

// labelPresets are the presets whose leaf and spine keys cloud tooling sets;
// tandem's own labels and GFD's (which carry no leaf) are left out, so the
// agent never reads back what it wrote. EKS is handled by layer number.
var labelPresets = []string{topology.PresetTopograph, topology.PresetTopographV0, topology.PresetGKE, topology.PresetOCI, topology.PresetNebius, topology.PresetCoreWeave}

// Labels reads the leaf and spine from node labels clouds and Topograph set.
// The leaf applies to every NIC of the node.
type Labels struct{}

var _ Source = Labels{}

func (Labels) Name() v1alpha1.LeafSource { return v1alpha1.LeafSourceLabel }

func (Labels) Lookup(_ context.Context, node Node, nics []NIC) (map[string]Result, error) {
	leaf, spine := NodeLeafFromLabels(node.Labels)
	out := map[string]Result{}
	if leaf == "" && spine == "" {
		return out, nil
	}
	for _, n := range nics {
		out[n.Name] = Result{Leaf: leaf, Spine: spine}
	}
	if len(nics) == 0 || leaf == "" {
		out[""] = Result{Spine: spine}
	}
	return out, nil
}

// NodeLeafFromLabels returns the leaf and spine the labels name: the first
// preset (Topograph, then GKE) that has a leaf label, else EKS, whose leaf is
// the highest-numbered network-node layer present and spine the one above.
func NodeLeafFromLabels(labels map[string]string) (leaf, spine string) {
	for _, name := range labelPresets {
		levels, err := topology.PresetLevels(name)
		if err != nil {
			continue
		}
		var leafKey, spineKey string
		for _, l := range levels {
			switch l.Name {
			case topology.LevelLeaf:
				leafKey = l.Key
			case topology.LevelSpine:
				spineKey = l.Key
			}
		}
		if v := labels[leafKey]; v != "" {
			return v, labels[spineKey]
		}
	}
	var layers []int
	for k, v := range labels {
		if rest, ok := strings.CutPrefix(k, EKSLayerPrefix); ok && v != "" {
			if n, err := strconv.Atoi(rest); err == nil && n > 0 {
				layers = append(layers, n)
			}
		}
	}
	if len(layers) == 0 {
		return "", ""
	}
	sort.Ints(layers)
	top := layers[len(layers)-1]
	leaf = labels[EKSLayerPrefix+strconv.Itoa(top)]
	if len(layers) > 1 {
		spine = labels[EKSLayerPrefix+strconv.Itoa(layers[len(layers)-2])]
	}
	return leaf, spine
}
