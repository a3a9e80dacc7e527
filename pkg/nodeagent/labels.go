package nodeagent

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// ManagedLabels are the node labels the agent owns.
var ManagedLabels = []string{topology.LabelNVLinkDomain, topology.LabelLeaf, topology.LabelSpine, topology.LabelGPUDirectRDMA}

// NodeLabels are the label values the discovery implies; an empty value
// means the label should be absent, and the publisher removes it. The leaf
// label is absent on a node without a node leaf: no NIC's leaf is known, or
// the NICs reach several leaves with none holding a majority (see
// leaf.NodeLeaf), so a leaf from an earlier run does not linger.
func (d *Discovery) NodeLabels() map[string]string {
	ready := "false"
	if d.GPUDirect.Ready {
		ready = "true"
	}
	return map[string]string{
		topology.LabelNVLinkDomain:  LabelValue(d.NVLinkDomain),
		topology.LabelLeaf:          LabelValue(d.Fabric.Leaf),
		topology.LabelSpine:         LabelValue(d.Fabric.Spine),
		topology.LabelGPUDirectRDMA: ready,
	}
}

// LabelValue returns v when it is a valid label value, and otherwise a valid
// stand-in that is stable and distinct per v: up to 22 characters of v made
// safe, a dash, and 40 hex digits of v's SHA-256 (at most 63 characters).
func LabelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	var b strings.Builder
	for _, r := range v {
		if b.Len() == 22 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	prefix := strings.TrimLeft(b.String(), "-_.")
	if prefix == "" {
		prefix = "h"
	}
	return prefix + "-" + hex.EncodeToString(sum[:])[:40]
}
