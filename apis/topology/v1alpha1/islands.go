package v1alpha1

import "sort"

// Islands are the indexes of the GPUs of each NVLink island, read from each
// GPU's island, islands in the order of their ids and GPUs in status order.
func (st *NodeTopologyStatus) Islands() [][]int32 {
	byID := map[int32][]int32{}
	var ids []int32
	for _, g := range st.GPUs {
		if _, seen := byID[g.Island]; !seen {
			ids = append(ids, g.Island)
		}
		byID[g.Island] = append(byID[g.Island], g.Index)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	out := make([][]int32, 0, len(ids))
	for _, id := range ids {
		out = append(out, byID[id])
	}
	return out
}
