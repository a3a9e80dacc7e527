package topology

// SubDomainCounts is, for the domain at level holding node, its count of
// member nodes in each domain of the finer level sub, as the index keeps it.
func (v *DomainIndex) SubDomainCounts(level int, node string, sub int) map[string]int {
	v.cluster.mu.RLock()
	defer v.cluster.mu.RUnlock()
	p := v.places[node]
	if p == nil || p.ids[level] == "" {
		return nil
	}
	out := map[string]int{}
	for id, n := range v.domains[level][p.ids[level]].subs[sub] {
		out[id] = n
	}
	return out
}
