package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
)

// heldSizes are the GPU counts another tenant's pods hold: small jobs and
// TP≤4 engines, the ones that leave islands part-used.
var heldSizes = []int{1, 2, 4}

// HoldGPUs makes the cluster partly used before the workload arrives: pods
// of another tenant (clusterdesc.HolderNamespace) come to hold
// round(share × all GPUs) GPUs, in addition to any allocatedGPUs of the
// description. Each holder goes to a GPU node picked at random among those
// with a free GPU and holds 1, 2 or 4 GPUs at random, never more than the
// node has free nor more than are left to hold. Its GPUs are chosen as the
// device plugin chooses them: within the tightest NVLink island that holds
// them all, or, when none does, from the islands with the fewest free GPUs
// first; within an island, the lowest free indexes. The same nodes and
// seed always give the same holders. It returns how many GPUs it held.
func HoldGPUs(nodes []clusterdesc.Node, share float64, seed uint64) (int, error) {
	if share < 0 || share >= 1 || math.IsNaN(share) {
		return 0, fmt.Errorf("held share %g: must be at least 0 and below 1", share)
	}
	total, free := 0, 0
	var open []int // nodes with a free GPU
	for i := range nodes {
		total += nodes[i].GPUCount()
		f := nodes[i].GPUCount() - len(nodes[i].Held())
		free += f
		if f > 0 {
			open = append(open, i)
		}
	}
	want := int(math.Round(share * float64(total)))
	if want > free {
		return 0, fmt.Errorf("held share %g: %d of the cluster's %d GPUs asked, but only %d are free", share, want, total, free)
	}
	rng := rand.New(rand.NewPCG(seed, 0x7a6e64656d))
	held := 0
	for held < want {
		k := rng.IntN(len(open))
		n := &nodes[open[k]]
		nodeFree := n.GPUCount() - len(n.Held())
		var sizes []int
		for _, s := range heldSizes {
			if s <= nodeFree && s <= want-held {
				sizes = append(sizes, s)
			}
		}
		size := sizes[rng.IntN(len(sizes))]
		gpus := pickGPUs(n.Islands(), n.Held(), size)
		name := fmt.Sprintf("held-%s-%d", n.Node.Name, len(n.Holders))
		if err := n.Hold(name, gpus); err != nil {
			return held, err
		}
		held += size
		if nodeFree == size {
			open = slices.Delete(open, k, k+1)
		}
	}
	return held, nil
}

// pickGPUs chooses count free GPUs of a node: all from the tightest island
// that has count free, else from the islands with the fewest free first.
// The node must have count free GPUs.
func pickGPUs(islands [][]int32, held map[int32]bool, count int) []int32 {
	freeOf := func(island []int32) []int32 {
		var out []int32
		for _, g := range island {
			if !held[g] {
				out = append(out, g)
			}
		}
		slices.Sort(out)
		return out
	}
	free := make([][]int32, len(islands))
	for i, island := range islands {
		free[i] = freeOf(island)
	}
	best := -1
	for i, f := range free {
		if len(f) >= count && (best < 0 || len(f) < len(free[best])) {
			best = i
		}
	}
	if best >= 0 {
		return free[best][:count]
	}
	order := make([]int, len(free))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(free[a]) - len(free[b]) })
	var out []int32
	for _, i := range order {
		for _, g := range free[i] {
			if len(out) == count {
				return out
			}
			out = append(out, g)
		}
	}
	return out
}
