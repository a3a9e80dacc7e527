package bench

import (
	"fmt"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
)

// Generated clusters: leaves of 16 HGX H100 nodes, and every second leaf one
// GB200 NVL72 rack of 18 compute trays; at most 8 leaves per spine and at
// least two spines, leaves spread round-robin over the spines.
const (
	hgxPerLeaf     = 16
	traysPerRack   = 18
	leavesPerSpine = 8
	rackEvery      = 2
)

// GenerateCluster describes a cluster of exactly nodes GPU nodes (the last
// leaf is cut short) in one zone.
func GenerateCluster(nodes int) (*clusterdesc.Cluster, error) {
	if nodes < 1 {
		return nil, fmt.Errorf("a generated cluster needs at least one node, not %d", nodes)
	}
	type leaf struct {
		rack  bool
		count int
	}
	var leaves []leaf
	for left := nodes; left > 0; {
		l := leaf{rack: len(leaves)%rackEvery == rackEvery-1, count: hgxPerLeaf}
		if l.rack {
			l.count = traysPerRack
		}
		l.count = min(l.count, left)
		left -= l.count
		leaves = append(leaves, l)
	}
	spines := max(2, (len(leaves)+leavesPerSpine-1)/leavesPerSpine)
	spines = min(spines, len(leaves))
	c := &clusterdesc.Cluster{}
	for i, l := range leaves {
		spine := fmt.Sprintf("s%d", i%spines+1)
		leafName := fmt.Sprintf("%s-l%d", spine, i/spines+1)
		g := clusterdesc.NodeGroup{Name: leafName + "-hgx", Count: l.count, Shape: "hgx-h100", Zone: "z1", Spine: spine, Leaf: leafName}
		if l.rack {
			g.Name, g.Shape, g.NVLinkDomain = leafName+"-nvl72", "gb200-tray", leafName+"-nvl72"
		}
		if l.count == 1 {
			// A group of one is named without a suffix; keep the suffix.
			g.Name += "-0"
		}
		c.Nodes = append(c.Nodes, g)
	}
	return c, c.Validate()
}
