package topology

import (
	"fmt"
	"sort"
	"time"
)

// PCIeLevel orders GPU-to-NIC distances, nearest first, so that "at or
// below PXB" is a comparison.
type PCIeLevel int

const (
	PCIeLevelPIX PCIeLevel = iota
	PCIeLevelPXB
	PCIeLevelPHB
	PCIeLevelNODE
	PCIeLevelSYS
	// pcieLevelNone: the GPU has no usable NIC at all.
	pcieLevelNone
)

// pcieLevelNames are the names nvidia-smi topo -m and NCCL use, which the
// NodeTopology API uses too.
var pcieLevelNames = []string{"PIX", "PXB", "PHB", "NODE", "SYS"}

// ParsePCIeLevel reads PIX, PXB, PHB, NODE or SYS.
func ParsePCIeLevel(s string) (PCIeLevel, error) {
	for i, name := range pcieLevelNames {
		if name == s {
			return PCIeLevel(i), nil
		}
	}
	return 0, fmt.Errorf("unknown PCIe level %q, want one of %v", s, pcieLevelNames)
}

func (l PCIeLevel) String() string {
	if l >= 0 && int(l) < len(pcieLevelNames) {
		return pcieLevelNames[l]
	}
	return "none"
}

// GPUSlot is one GPU as the fit sees it.
type GPUSlot struct {
	Index  int32
	UUID   string
	Island int
	MIG    bool
	// NICLevel is the PCIe level of the nearest NIC whose port is active,
	// and NICRateGbps that NIC's rate.
	NICLevel    PCIeLevel
	NICRateGbps int32
	NIC         string
	// RDMAReady: the agent judged this GPU ready for GPUDirect RDMA through
	// its own NICs, or, on a report without per-GPU readiness, the node.
	RDMAReady bool
}

// NodeReport is what a node's agent reports, in the terms placement needs.
// The scheduler's adapter fills it from a NodeTopology object, keeping the
// order of its lists so that errors can name the field they come from.
type NodeReport struct {
	GPUs      []ReportedGPU
	NICs      []ReportedNIC
	PCIePaths []ReportedPCIePath
	// GPUDirectReady is the agent's verdict on GPUDirect RDMA, and
	// GPUDirectReason names the first failed check when it is not ready.
	GPUDirectReady  bool
	GPUDirectReason string
	// GPUDirectGPUs is the agent's readiness per GPU; nil on a report from
	// an agent that does not publish it, where GPUDirectReady stands for
	// every GPU.
	GPUDirectGPUs []ReportedGPUDirect
	// Allocations are the GPUs the kubelet reports held, by pod.
	Allocations []Allocation
	// Heartbeat is when the agent last confirmed the report; zero when it
	// never did.
	Heartbeat time.Time
	// Malformed is set by the adapter when the object contradicts itself
	// in parts the report does not carry; such a report is not used.
	Malformed error
}

// ReportedGPU is one GPU of a NodeReport.
type ReportedGPU struct {
	Index int32
	UUID  string
	// PCIBusID is in sysfs form (0000:1b:00.0); DRA drivers name a device
	// by it where they publish no UUID.
	PCIBusID string
	// Island is the agent's id of the GPU's NVLink island.
	Island int32
	MIG    bool
}

// ReportedGPUDirect is one GPU's GPUDirect RDMA readiness.
type ReportedGPUDirect struct {
	GPU   int32
	Ready bool
	// Blocking names the checks that keep it from being ready.
	Blocking []string
}

// ReportedNIC is one RDMA port of a NodeReport.
type ReportedNIC struct {
	Name     string
	Active   bool
	RateGbps int32
}

// ReportedPCIePath is the PCIe level between one GPU and one NIC.
type ReportedPCIePath struct {
	GPU   int32
	NIC   string
	Level string
}

// Allocation is the GPUs one pod holds, as the kubelet reports them.
type Allocation struct {
	// Pod is namespace/name.
	Pod  string
	GPUs []string
}

// NodeGPUs is a node's GPUs compiled from its report once per version, so
// that a fit is O(GPUs).
type NodeGPUs struct {
	GPUs []GPUSlot
	// Islands lists the positions in GPUs of each island's members.
	Islands [][]int
	// GPUDirectReady is the agent's verdict on GPUDirect RDMA.
	GPUDirectReady bool
	// GPUDirectReason names the first failed check when not ready.
	GPUDirectReason string
	// PerGPUReadiness: the report judged GPUs one by one, so an RDMA
	// request may use the ready GPUs of a node that is not ready as a whole.
	PerGPUReadiness bool

	byUUID map[string]int
	byPCI  map[string]int
}

// CompileNodeGPUs builds the fit model from a node's report. It rejects a
// report whose parts contradict each other, naming the NodeTopology field.
func CompileNodeGPUs(r *NodeReport) (*NodeGPUs, error) {
	n := &NodeGPUs{
		GPUs:           make([]GPUSlot, len(r.GPUs)),
		byUUID:         make(map[string]int, len(r.GPUs)),
		byPCI:          make(map[string]int, len(r.GPUs)),
		GPUDirectReady: r.GPUDirectReady,
	}
	if !n.GPUDirectReady {
		n.GPUDirectReason = r.GPUDirectReason
		if n.GPUDirectReason == "" {
			n.GPUDirectReason = "GPUDirect RDMA is not ready"
		}
	}
	byIndex := make(map[int32]int, len(r.GPUs))
	islandPos := map[int32]int{}
	for i, g := range r.GPUs {
		if _, dup := byIndex[g.Index]; dup {
			return nil, fmt.Errorf("status.gpus[%d]: duplicate index %d", i, g.Index)
		}
		byIndex[g.Index] = i
		if j, dup := n.byUUID[g.UUID]; dup {
			return nil, fmt.Errorf("status.gpus[%d]: uuid %q is also status.gpus[%d]'s", i, g.UUID, j)
		}
		n.byUUID[g.UUID] = i
		if g.PCIBusID != "" {
			n.byPCI[NormalizePCIBusID(g.PCIBusID)] = i
		}
		pos, ok := islandPos[g.Island]
		if !ok {
			pos = len(n.Islands)
			islandPos[g.Island] = pos
			n.Islands = append(n.Islands, nil)
		}
		n.Islands[pos] = append(n.Islands[pos], i)
		n.GPUs[i] = GPUSlot{Index: g.Index, UUID: g.UUID, Island: pos, MIG: g.MIG, NICLevel: pcieLevelNone, RDMAReady: r.GPUDirectReady}
	}
	if r.GPUDirectGPUs != nil {
		n.PerGPUReadiness = true
		for i := range n.GPUs {
			// A GPU the agent did not judge is not ready.
			n.GPUs[i].RDMAReady = false
		}
		seen := make(map[int32]int, len(r.GPUDirectGPUs))
		for i, g := range r.GPUDirectGPUs {
			pos, ok := byIndex[g.GPU]
			if !ok {
				return nil, fmt.Errorf("status.gpuDirectRDMA.gpus[%d]: gpu %d is not in status.gpus", i, g.GPU)
			}
			if j, dup := seen[g.GPU]; dup {
				return nil, fmt.Errorf("status.gpuDirectRDMA.gpus[%d]: gpu %d is also status.gpuDirectRDMA.gpus[%d]", i, g.GPU, j)
			}
			seen[g.GPU] = i
			if g.Ready && len(g.Blocking) > 0 {
				return nil, fmt.Errorf("status.gpuDirectRDMA.gpus[%d]: gpu %d is ready but blocked by %v", i, g.GPU, g.Blocking)
			}
			n.GPUs[pos].RDMAReady = g.Ready
		}
	}
	nics := make(map[string]ReportedNIC, len(r.NICs))
	for _, nic := range r.NICs {
		nics[nic.Name] = nic
	}
	for i, p := range r.PCIePaths {
		g, ok := byIndex[p.GPU]
		if !ok {
			return nil, fmt.Errorf("status.pciePaths[%d]: gpu %d is not in status.gpus", i, p.GPU)
		}
		nic, ok := nics[p.NIC]
		if !ok {
			return nil, fmt.Errorf("status.pciePaths[%d]: nic %q is not in status.nics", i, p.NIC)
		}
		level, err := ParsePCIeLevel(p.Level)
		if err != nil {
			return nil, fmt.Errorf("status.pciePaths[%d].level: %w", i, err)
		}
		if !nic.Active {
			continue
		}
		slot := &n.GPUs[g]
		if level < slot.NICLevel || (level == slot.NICLevel && nic.RateGbps > slot.NICRateGbps) {
			slot.NICLevel, slot.NICRateGbps, slot.NIC = level, nic.RateGbps, nic.Name
		}
	}
	// The kubelet hands each GPU to one pod, and only GPUs the node has.
	holder := make(map[string]string, len(r.GPUs))
	for i, a := range r.Allocations {
		for _, uuid := range a.GPUs {
			if _, ok := n.byUUID[uuid]; !ok {
				return nil, fmt.Errorf("status.gpuAllocations[%d]: pod %s holds gpu %q, which is not in status.gpus", i, a.Pod, uuid)
			}
			if other, dup := holder[uuid]; dup && other != a.Pod {
				return nil, fmt.Errorf("status.gpuAllocations[%d]: gpu %q is allocated to pod %s and to pod %s", i, uuid, other, a.Pod)
			}
			holder[uuid] = a.Pod
		}
	}
	if r.Malformed != nil {
		return nil, r.Malformed
	}
	return n, nil
}

// Used marks the GPUs already taken: those the kubelet reported and those
// the scheduler placed since.
type Used []bool

// NewUsed marks the reported allocations. CompileNodeGPUs refused a report
// naming unknown UUIDs; unknown ones are skipped all the same.
func (n *NodeGPUs) NewUsed(allocations []Allocation, skipPods func(pod string) bool) Used {
	used := make(Used, len(n.GPUs))
	for _, a := range allocations {
		if skipPods != nil && skipPods(a.Pod) {
			continue
		}
		for _, uuid := range a.GPUs {
			if i, ok := n.byUUID[uuid]; ok {
				used[i] = true
			}
		}
	}
	return used
}

// Mark sets the GPUs with the given indexes as used.
func (n *NodeGPUs) Mark(used Used, indexes []int32) {
	for _, idx := range indexes {
		for i := range n.GPUs {
			if n.GPUs[i].Index == idx {
				used[i] = true
			}
		}
	}
}

// IslandPolicy is how strictly a multi-GPU pod needs one NVLink island.
type IslandPolicy string

const (
	IslandRequired  IslandPolicy = "Required"
	IslandPreferred IslandPolicy = "Preferred"
	IslandIgnore    IslandPolicy = "Ignore"
)

// GPURequest is what a pod needs from a node's GPUs.
type GPURequest struct {
	Count    int
	Island   IslandPolicy
	NeedRDMA bool
	// MaxNICLevel is the farthest NIC a GPU may use for RDMA.
	MaxNICLevel PCIeLevel
	AllowMIG    bool
	// FirstFit: the GPUs come from a Dynamic Resource Allocation allocator
	// that takes the first Count free ones in the node's allocation order
	// (Cluster.SetAllocationOrder), so on a node with a known order the fit
	// is those GPUs, judged as they fall, rather than the island tandem
	// would choose.
	FirstFit bool
}

// Fit is where a request would land on a node.
type Fit struct {
	// GPUs are the chosen GPUs' indexes.
	GPUs []int32
	// OneIsland: every chosen GPU is on one NVLink island.
	OneIsland bool
	// IslandFree is how many eligible GPUs the chosen island had free; with
	// OneIsland false, the free GPUs on the node.
	IslandFree int
	// WholeIslandsBroken counts fully free islands the fit takes GPUs from
	// while leaving some of them free.
	WholeIslandsBroken int
	// NICLevelSum and NICRateSum total the chosen GPUs' nearest NICs.
	NICLevelSum int
	NICRateSum  int64
}

// Unfit says why a request cannot land on a node.
type Unfit struct {
	Reason string
	// Resolvable: freeing GPUs (preemption, a finished pod) could fix it.
	Resolvable bool
}

// Fit finds the best place for req among the free GPUs: the island the
// request fills most tightly, so that the largest free islands stay whole for
// bigger pods; among equals, the one with nearer and faster NICs. It is
// O(GPUs) apart from sorting the islands' candidates.
func (n *NodeGPUs) Fit(req GPURequest, used Used) (Fit, *Unfit) {
	if req.NeedRDMA && !n.anyRDMAReady() {
		reason := n.GPUDirectReason
		if reason == "" {
			reason = "no GPU is ready for GPUDirect RDMA"
		}
		return Fit{}, &Unfit{Reason: reason}
	}
	eligible := func(i int) bool { return n.eligible(i, req, used) }
	var candidates [][]int
	total := 0
	for _, island := range n.Islands {
		var free []int
		for _, i := range island {
			if eligible(i) {
				free = append(free, i)
			}
		}
		candidates = append(candidates, free)
		total += len(free)
	}
	if total < req.Count {
		return Fit{}, n.explainShortage(req, used, total)
	}
	best := -1
	for c, free := range candidates {
		if len(free) < req.Count {
			continue
		}
		if best < 0 || len(free) < len(candidates[best]) ||
			(len(free) == len(candidates[best]) && n.nicQuality(free, req.Count) < n.nicQuality(candidates[best], req.Count)) {
			best = c
		}
	}
	if best >= 0 {
		fit := n.take(candidates[best], req.Count)
		fit.OneIsland = true
		fit.IslandFree = len(candidates[best])
		if len(candidates[best]) == len(n.Islands[best]) && len(candidates[best]) > req.Count {
			fit.WholeIslandsBroken = 1
		}
		return fit, nil
	}
	if req.Count > 1 && req.Island == IslandRequired {
		largest := 0
		for _, free := range candidates {
			largest = max(largest, len(free))
		}
		return Fit{}, &Unfit{Resolvable: true, Reason: fmt.Sprintf(
			"no NVLink island has %d free GPUs%s (largest: %d)", req.Count, n.qualifier(req), largest)}
	}
	// Spread over islands, fullest first, to keep the emptiest ones whole.
	order := make([]int, len(candidates))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(candidates[order[a]]) < len(candidates[order[b]]) })
	var pool []int
	fit := Fit{IslandFree: total}
	for _, c := range order {
		if len(pool) >= req.Count {
			break
		}
		take := min(len(candidates[c]), req.Count-len(pool))
		if len(candidates[c]) == len(n.Islands[c]) && take < len(candidates[c]) {
			fit.WholeIslandsBroken++
		}
		pool = append(pool, candidates[c][:take]...)
	}
	spread := n.take(pool, req.Count)
	spread.IslandFree, spread.WholeIslandsBroken = fit.IslandFree, fit.WholeIslandsBroken
	return spread, nil
}

// anyRDMAReady says whether any GPU may take an RDMA pod: the node's
// verdict on a report without per-GPU readiness.
func (n *NodeGPUs) anyRDMAReady() bool {
	if !n.PerGPUReadiness {
		return n.GPUDirectReady
	}
	for _, g := range n.GPUs {
		if g.RDMAReady {
			return true
		}
	}
	return false
}

func (n *NodeGPUs) qualifier(req GPURequest) string {
	if req.NeedRDMA && n.PerGPUReadiness {
		return fmt.Sprintf(" ready for GPUDirect RDMA with a NIC at %s or nearer", req.MaxNICLevel)
	}
	if req.NeedRDMA {
		return fmt.Sprintf(" with a NIC at %s or nearer", req.MaxNICLevel)
	}
	for _, g := range n.GPUs {
		if g.MIG && !req.AllowMIG {
			return " outside MIG"
		}
	}
	return ""
}

// explainShortage says which constraint left too few GPUs.
func (n *NodeGPUs) explainShortage(req GPURequest, used Used, eligible int) *Unfit {
	free, nonMIG := 0, 0
	for i, g := range n.GPUs {
		if used[i] {
			continue
		}
		free++
		if !g.MIG || req.AllowMIG {
			nonMIG++
		}
	}
	switch {
	case free < req.Count:
		return &Unfit{Resolvable: true, Reason: fmt.Sprintf("%d of %d GPUs free, pod needs %d", free, len(n.GPUs), req.Count)}
	case nonMIG < req.Count:
		return &Unfit{Reason: fmt.Sprintf("only %d free GPUs are not MIG-partitioned, pod needs %d", nonMIG, req.Count)}
	case n.PerGPUReadiness:
		return &Unfit{Reason: fmt.Sprintf("only %d free GPUs are ready for GPUDirect RDMA with an active NIC at %s or nearer, pod needs %d",
			eligible, req.MaxNICLevel, req.Count)}
	default:
		return &Unfit{Reason: fmt.Sprintf("only %d free GPUs have an active NIC at %s or nearer for GPUDirect RDMA, pod needs %d",
			eligible, req.MaxNICLevel, req.Count)}
	}
}

// take picks count GPUs from positions, nearest NICs first.
func (n *NodeGPUs) take(positions []int, count int) Fit {
	sorted := append([]int(nil), positions...)
	sort.SliceStable(sorted, func(a, b int) bool {
		ga, gb := n.GPUs[sorted[a]], n.GPUs[sorted[b]]
		if ga.NICLevel != gb.NICLevel {
			return ga.NICLevel < gb.NICLevel
		}
		return ga.NICRateGbps > gb.NICRateGbps
	})
	return n.fitOf(sorted[:count])
}

// fitOf is the fit of exactly the GPUs at positions: their indexes and
// their nearest NICs' totals.
func (n *NodeGPUs) fitOf(positions []int) Fit {
	fit := Fit{GPUs: make([]int32, 0, len(positions))}
	for _, i := range positions {
		g := n.GPUs[i]
		fit.GPUs = append(fit.GPUs, g.Index)
		fit.NICLevelSum += int(min(g.NICLevel, PCIeLevelSYS+1))
		fit.NICRateSum += int64(g.NICRateGbps)
	}
	return fit
}

// eligible says whether the GPU at position i may take req: free, outside
// MIG unless allowed, and for RDMA ready with a NIC near enough.
func (n *NodeGPUs) eligible(i int, req GPURequest, used Used) bool {
	g := n.GPUs[i]
	if used[i] || (g.MIG && !req.AllowMIG) {
		return false
	}
	return !req.NeedRDMA || (g.RDMAReady && g.NICLevel <= req.MaxNICLevel)
}

// nicQuality is the summed NIC level of the count nearest GPUs; lower is better.
func (n *NodeGPUs) nicQuality(positions []int, count int) int {
	return n.take(positions, count).NICLevelSum
}

// ScoreWeights weigh the parts of Score.
type ScoreWeights struct {
	IslandFit, NICProximity, NICBandwidth int64
}

// FullNICRateGbps is the NIC bandwidth per GPU that scores full marks: one
// 400G NIC per GPU, as on HGX and GB200.
const FullNICRateGbps = 400

// MaxScore is the top of the scheduler's score range.
const MaxScore = 100

// Score rates a fit in [0, MaxScore]: first how tightly it fills an NVLink
// island (a fit that breaks a whole island, or spans islands, scores less),
// then how near its NICs are, then NIC bandwidth per GPU.
func (f Fit) Score(w ScoreWeights) int64 {
	count := int64(len(f.GPUs))
	if count == 0 || w.IslandFit+w.NICProximity+w.NICBandwidth == 0 {
		return 0
	}
	var island int64
	if f.OneIsland && f.IslandFree > 0 {
		island = MaxScore * count / int64(f.IslandFree)
	} else if f.IslandFree > 0 {
		// Spanning islands works but wastes NVLink: at most half marks.
		island = MaxScore / 2 * count / int64(f.IslandFree)
	}
	if f.WholeIslandsBroken > 0 {
		island /= 2
	}
	levels := int64(PCIeLevelSYS + 1)
	proximity := MaxScore * (levels*count - int64(f.NICLevelSum)) / (levels * count)
	bandwidth := min(MaxScore, MaxScore*f.NICRateSum/(count*FullNICRateGbps))
	score := (w.IslandFit*island + w.NICProximity*proximity + w.NICBandwidth*bandwidth) / (w.IslandFit + w.NICProximity + w.NICBandwidth)
	return max(0, min(MaxScore, score))
}

// FitOrdered is Fit for a request whose GPUs an allocator picks: with
// req.FirstFit and an order known, the first req.Count free GPUs in order
// (devices naming no GPU of the node are skipped). The allocator knows
// nothing of NVLink islands or NICs, so the fit is refused when those GPUs
// span islands under IslandRequired, or when one of them cannot serve an
// RDMA request.
func (n *NodeGPUs) FitOrdered(req GPURequest, used Used, order []DeviceID) (Fit, *Unfit) {
	if !req.FirstFit || len(order) == 0 {
		return n.Fit(req, used)
	}
	if req.NeedRDMA && !n.anyRDMAReady() {
		return n.Fit(req, used)
	}
	chosen := make([]int, 0, req.Count)
	for _, d := range order {
		if len(chosen) == req.Count {
			break
		}
		// The allocator passes over used and MIG devices, not over GPUs
		// far from a NIC: those are taken, then judged below.
		if i, ok := n.Resolve(d); ok && !used[i] && (!n.GPUs[i].MIG || req.AllowMIG) {
			chosen = append(chosen, i)
		}
	}
	if len(chosen) < req.Count {
		return Fit{}, n.explainShortage(req, used, len(chosen))
	}
	fit := n.fitOf(chosen)
	picked := fmt.Sprintf("the DRA allocator takes the first free GPUs in its ResourceSlice's order, %v", fit.GPUs)
	took := map[int]int{}
	for _, i := range chosen {
		if !n.eligible(i, req, used) {
			return Fit{}, &Unfit{Resolvable: true, Reason: fmt.Sprintf("%s, and GPU %d has no NIC at %s or nearer ready for GPUDirect RDMA",
				picked, n.GPUs[i].Index, req.MaxNICLevel)}
		}
		took[n.GPUs[i].Island]++
	}
	fit.OneIsland = len(took) == 1
	for k, island := range n.Islands {
		free := 0
		for _, i := range island {
			if n.eligible(i, req, used) {
				free++
			}
		}
		if !fit.OneIsland || took[k] > 0 {
			fit.IslandFree += free
		}
		if took[k] > 0 && free == len(island) && took[k] < free {
			fit.WholeIslandsBroken++
		}
	}
	if !fit.OneIsland && req.Count > 1 && req.Island == IslandRequired {
		return Fit{}, &Unfit{Resolvable: true, Reason: fmt.Sprintf(
			"%s, which span %d NVLink islands (a matchAttribute constraint in the claim keeps them on one)", picked, len(took))}
	}
	return fit, nil
}
