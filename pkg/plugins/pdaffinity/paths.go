package pdaffinity

import (
	"sync"

	v1 "k8s.io/api/core/v1"

	"github.com/tandem-sched/tandem/pkg/topology"
)

// nodePath is a node's place in the topology: its domain id at every level
// ("" where the node lacks the label).
type nodePath struct {
	resourceVersion string
	path            topology.DomainPath
	ids             []string
	gpuDirect       bool
}

// pathCache computes a node's domain ids once per node version rather than
// once per scheduling cycle.
type pathCache struct {
	levels topology.Levels
	mu     sync.RWMutex
	byNode map[string]*nodePath
}

func newPathCache(levels topology.Levels) *pathCache {
	return &pathCache{levels: levels, byNode: map[string]*nodePath{}}
}

func (c *pathCache) get(node *v1.Node) *nodePath {
	c.mu.RLock()
	p, ok := c.byNode[node.Name]
	c.mu.RUnlock()
	if ok && p.resourceVersion == node.ResourceVersion && node.ResourceVersion != "" {
		return p
	}
	p = &nodePath{
		resourceVersion: node.ResourceVersion,
		path:            c.levels.PathOf(node.Labels),
		ids:             make([]string, len(c.levels)),
		// The model's one rule: only "true" means GPUDirect RDMA works.
		gpuDirect: topology.GPUDirectRDMAReady(node.Labels),
	}
	for i := range c.levels {
		p.ids[i] = c.levels.DomainID(p.path, i)
	}
	c.mu.Lock()
	c.byNode[node.Name] = p
	c.mu.Unlock()
	return p
}
