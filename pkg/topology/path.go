package topology

import "strings"

// DomainPath is a node's label values, one per level of the Levels it was
// built from, coarse to fine. A value is empty where the node lacks the label.
type DomainPath []string

// domainSeparator joins the values of a DomainID. Label values cannot
// contain it, so distinct paths never produce the same ID.
const domainSeparator = "/"

// PathOf reads a node's domain at every level from its labels.
func (l Levels) PathOf(labels map[string]string) DomainPath {
	p := make(DomainPath, len(l))
	for i := range l {
		p[i] = labels[l[i].Key]
	}
	return p
}

// DomainID returns the ID of the domain p belongs to at the given level, or
// "" when p has no value there. The ID joins the values of every level from
// the coarsest down to this one, as Kueue's topology-aware scheduling does,
// because a leaf name is only unique under its spine: two nodes are in the
// same domain at a level exactly when their IDs there are equal and non-empty.
// A global level's ID is its value alone.
func (l Levels) DomainID(p DomainPath, level int) string {
	if level < 0 || level >= len(l) || p.at(level) == "" {
		return ""
	}
	if l[level].Global {
		return p.at(level)
	}
	var b strings.Builder
	for i := 0; i <= level; i++ {
		if i > 0 {
			b.WriteString(domainSeparator)
		}
		b.WriteString(p.at(i))
	}
	return b.String()
}

// LowestCommonLevel returns the index of the finest level a and b share, or
// -1 when they share none. They share level i when both have the same,
// non-empty value there and, unless the level is global, equal values at
// every coarser level. Equal empty values count as equal at a coarser
// level, so on-prem nodes without a zone label can still share a leaf; but
// an empty value never counts as a shared domain itself, so two nodes that
// both lack an NVLink-domain label are not assumed to share one.
func (l Levels) LowestCommonLevel(a, b DomainPath) int {
	common := -1
	chain := true
	for i := range l {
		va, vb := a.at(i), b.at(i)
		if va != vb {
			chain = false
			continue
		}
		if va != "" && (chain || l[i].Global) {
			common = i
		}
	}
	return common
}

// at tolerates paths shorter than the level list, such as one built for a
// different hierarchy, by treating the missing levels as unlabelled.
func (p DomainPath) at(i int) string {
	if i < len(p) {
		return p[i]
	}
	return ""
}

// PathClass names the kind of path a KV cache takes between two nodes: the
// name of the finest level they share, PathNone or PathHostBounce.
type PathClass string

const (
	// PathNone is a pair that shares no level, typically nodes in different
	// zones.
	PathNone PathClass = "none"
	// PathHostBounce is a pair that must use the network while GPUDirect RDMA
	// is not ready on at least one end, so the KV cache is staged through
	// host memory.
	PathHostBounce PathClass = "host-bounce"
)

// Classify returns the path class between nodes at a and b. To classify a
// pair on the same node, pass the node's path twice.
//
// A pair that shares the nvlink-domain level (or a finer one) is classed by
// that level whatever its GPUDirect state, because the transfer never touches
// a NIC. Any other pair that shares a level but lacks GPUDirect RDMA on either
// end is PathHostBounce. A pair that shares no level is PathNone even without
// GPUDirect: the cross-zone link is the bottleneck either way.
func (l Levels) Classify(a, b DomainPath, gpuDirectReadyA, gpuDirectReadyB bool) PathClass {
	common := l.LowestCommonLevel(a, b)
	if common < 0 {
		return PathNone
	}
	if nvlink, ok := l.Index(LevelNVLinkDomain); ok && common >= nvlink {
		return PathClass(l[common].Name)
	}
	if !gpuDirectReadyA || !gpuDirectReadyB {
		return PathHostBounce
	}
	return PathClass(l[common].Name)
}

// GPUDirectRDMAReady reports whether a node's labels say GPUDirect RDMA is
// ready on it. Anything but "true", including no label, means not ready:
// assuming RDMA that is not there would undercount the transfer cost tenfold.
func GPUDirectRDMAReady(labels map[string]string) bool {
	return labels[LabelGPUDirectRDMA] == "true"
}
