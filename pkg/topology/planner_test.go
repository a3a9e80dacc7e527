package topology_test

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// clusterOf builds the model of a cluster description, the way the
// scheduler feeds it: node labels, then each node's report.
func clusterOf(t testing.TB, yaml string) (*topology.Cluster, *topology.DomainIndex) {
	t.Helper()
	desc, err := clusterdesc.Parse([]byte(yaml))
	require.NoError(t, err)
	c := topology.NewCluster()
	v := c.Domains(topology.DefaultLevels())
	for _, n := range desc.Build(time.Now()) {
		c.SetNodeLabels(n.Node.Name, n.Node.Labels)
		if n.Topology != nil {
			c.SetReport(n.Node.Name, topologysource.ReportOf(n.Topology))
		}
	}
	return c, v
}

func unitPod(name string, prefill bool, gpus int) topology.UnitPod {
	return topology.UnitPod{Name: name, Prefill: prefill, Request: req(gpus)}
}

func unit(pods ...topology.UnitPod) topology.UnitSpec {
	return topology.UnitSpec{Pods: pods, RequiredLevel: -1}
}

// classes lists the path class of each decode from its nearest prefill.
func classes(v *topology.DomainIndex, spec topology.UnitSpec, plan *topology.Plan) map[topology.PathClass]int {
	model := topology.DefaultCostModel()
	out := map[topology.PathClass]int{}
	for _, d := range spec.Pods {
		if d.Prefill {
			continue
		}
		best := topology.PathNone
		for _, p := range spec.Pods {
			if p.Prefill {
				c := v.Classify(plan.Nodes[p.Name], plan.Nodes[d.Name])
				if model.Bandwidth(c) > model.Bandwidth(best) {
					best = c
				}
			}
		}
		out[best]++
	}
	return out
}

func TestPlanMixedSizesShareOneBoard(t *testing.T) {
	// Every board but one has GPUs held by other tenants.
	_, v := clusterOf(t, `nodes:
- {name: used, count: 3, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2]}
- {name: free, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	spec := unit(unitPod("p0", true, 2), unitPod("p1", true, 2), unitPod("d0", false, 4))
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"p0": "free", "p1": "free", "d0": "free"}, plan.Nodes)
	require.True(t, plan.Optimal())
	require.Equal(t, topology.LevelNVLinkDomain, v.Levels()[plan.Level].Name)
}

func TestPlanTakesAWholeFreeLeafOverPartlyUsedOnes(t *testing.T) {
	// Leaves l1 and l2 have more free GPUs in all than the unit needs, but
	// only half a board free on each node: a 4P4D unit of TP4 engines would
	// pair across boards there. l3 is whole.
	_, v := clusterOf(t, `nodes:
- {name: l1, count: 8, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3]}
- {name: l2, count: 8, shape: hgx-h100, zone: z1, spine: s1, leaf: l2, allocatedGPUs: [4, 5, 6, 7]}
- {name: l3, count: 4, shape: hgx-h100, zone: z1, spine: s2, leaf: l3}
`)
	var pods []topology.UnitPod
	for i := range 4 {
		pods = append(pods, unitPod(fmt.Sprintf("p%d", i), true, 4), unitPod(fmt.Sprintf("d%d", i), false, 4))
	}
	spec := unit(pods...)
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	for pod, node := range plan.Nodes {
		require.Regexp(t, "^l3-", node, "pod %s", pod)
	}
	require.Equal(t, map[topology.PathClass]int{topology.LevelNVLinkDomain: 4}, classes(v, spec, plan))
	// Of the 16 pairs, the 4 within a board are NVLink and the rest stay on
	// the leaf: the least any placement of 32 GPUs on 8-GPU boards costs.
	m := topology.DefaultCostModel()
	require.InDelta(t, 4/m.Bandwidth("nvlink-domain")+12/m.Bandwidth("leaf"), plan.Cost, 1e-9*plan.Cost)
}

func TestPlanRackUnderTwoLeavesIsOneNVLinkDomain(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: a, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l1, nvlinkDomain: rack1}
- {name: b, count: 2, shape: gb200-tray, zone: z1, spine: s1, leaf: l2, nvlinkDomain: rack1}
`)
	spec := unit(unitPod("p0", true, 4), unitPod("p1", true, 4), unitPod("d0", false, 4), unitPod("d1", false, 4))
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Equal(t, "rack1", plan.Domain)
	require.Equal(t, map[topology.PathClass]int{topology.LevelNVLinkDomain: 2}, classes(v, spec, plan))
	require.Equal(t, topology.PathClass(topology.LevelNVLinkDomain), v.Classify("a-0", "b-1"))
}

func TestPlanPrefersTheTightestDomain(t *testing.T) {
	// A 1P1D unit of TP4 engines fits one board: the half-used one, so the
	// whole board stays whole for a TP8 engine.
	_, v := clusterOf(t, `nodes:
- {name: whole, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: half, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3]}
`)
	plan, err := v.PlanUnit(topology.DefaultCostModel(), unit(unitPod("p", true, 2), unitPod("d", false, 2)))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"p": "half", "d": "half"}, plan.Nodes)
}

func TestPlanAnchorsOnPlacedPods(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: b, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l2}
`)
	placed := unitPod("p", true, 4)
	placed.Node = "b-1"
	plan, err := v.PlanUnit(topology.DefaultCostModel(), unit(placed, unitPod("d", false, 4)))
	require.NoError(t, err)
	require.Equal(t, "b-1", plan.Nodes["d"])
	require.Equal(t, "b-1", plan.Nodes["p"])
}

func TestPlanSameNodeForbidden(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	spec := unit(unitPod("p", true, 4), unitPod("d", false, 4))
	spec.ForbidSameNode = true
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.NotEqual(t, plan.Nodes["p"], plan.Nodes["d"])
	require.False(t, plan.Optimal(), "the pair must cross the leaf")
}

func TestPlanRequiredLevelWithoutRoom(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3, 4]}
- {name: b, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l2, allocatedGPUs: [0, 1, 2, 3, 4]}
`)
	spec := unit(unitPod("p0", true, 2), unitPod("p1", true, 2), unitPod("d0", false, 2), unitPod("d1", false, 2))
	spec.RequiredLevel = 2 // leaf: 6 free per leaf, the unit needs 8
	_, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.ErrorIs(t, err, topology.ErrNoRoom)
	spec.RequiredLevel = 1 // the spine holds 12
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Len(t, plan.Nodes, 4)
}

func TestPlanSkipsUnusableNodes(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: stale, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3]}
- {name: fresh, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	spec := unit(unitPod("p", true, 2), unitPod("d", false, 2))
	spec.Usable = func(node string, _ time.Time) bool { return node != "stale" }
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"p": "fresh", "d": "fresh"}, plan.Nodes)
}

// The aggregates kept by events equal the ones counted from scratch after
// any sequence of reservations, releases, reports and relabels.
func TestDomainAggregatesStayCurrent(t *testing.T) {
	const yaml = `nodes:
- {name: a, count: 4, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
- {name: b, count: 4, shape: gb200-tray, zone: z1, spine: s1, leaf: l2, nvlinkDomain: rack1}
- {name: c, count: 2, shape: gb200-tray, zone: z1, spine: s2, leaf: l3, nvlinkDomain: rack1}
`
	c, v := clusterOf(t, yaml)
	desc, err := clusterdesc.Parse([]byte(yaml))
	require.NoError(t, err)
	built := desc.Build(time.Now())
	rng := rand.New(rand.NewSource(1))
	var reserved []string
	for step := range 400 {
		n := built[rng.Intn(len(built))]
		switch op := rng.Intn(5); op {
		case 0, 1:
			uid := fmt.Sprint("pod-", step)
			if _, unfit, reason := c.Reserve(uid, "ns/"+uid, n.Node.Name, req(1+rng.Intn(4), island(topology.IslandPreferred)), topology.Usable); reason == "" && unfit == nil {
				reserved = append(reserved, uid)
			}
		case 2:
			if len(reserved) > 0 {
				i := rng.Intn(len(reserved))
				c.Release(reserved[i])
				reserved = append(reserved[:i], reserved[i+1:]...)
			}
		case 3:
			labels := map[string]string{}
			for k, val := range n.Node.Labels {
				labels[k] = val
			}
			labels[topology.LabelLeaf] = fmt.Sprint("l", rng.Intn(4))
			c.SetNodeLabels(n.Node.Name, labels)
		case 4:
			c.SetReport(n.Node.Name, topologysource.ReportOf(n.Topology))
		}
		requireAggregatesMatch(t, c, v, built)
	}
}

// requireAggregatesMatch recounts every domain's free GPUs from the nodes.
func requireAggregatesMatch(t *testing.T, c *topology.Cluster, v *topology.DomainIndex, built []clusterdesc.Node) {
	t.Helper()
	type agg struct{ free, largest int }
	want := map[string]agg{}
	for _, n := range built {
		view, ok := c.Node(n.Node.Name)
		require.True(t, ok)
		place, ok := v.Place(n.Node.Name)
		require.True(t, ok)
		free, largest := 0, 0
		for _, island := range view.GPUs.Islands {
			f := 0
			for _, i := range island {
				if !view.Used[i] && !view.GPUs.GPUs[i].MIG {
					f++
				}
			}
			free += f
			largest = max(largest, f)
		}
		for level, id := range place.IDs {
			if id == "" {
				continue
			}
			key := fmt.Sprint(level, "|", id)
			a := want[key]
			a.free += free
			a.largest = max(a.largest, largest)
			want[key] = a
		}
	}
	// Each domain's count of member nodes per finer domain, recounted.
	subs := map[string]map[string]int{}
	for _, n := range built {
		place, _ := v.Place(n.Node.Name)
		for level, id := range place.IDs {
			for sub := level + 1; sub < len(place.IDs) && id != ""; sub++ {
				if place.IDs[sub] == "" {
					continue
				}
				key := fmt.Sprint(level, "|", id, "|", sub)
				if subs[key] == nil {
					subs[key] = map[string]int{}
				}
				subs[key][place.IDs[sub]]++
			}
		}
	}
	for _, n := range built {
		place, _ := v.Place(n.Node.Name)
		for level, id := range place.IDs {
			if id == "" {
				continue
			}
			free, largest, ok := v.DomainFree(level, n.Node.Name)
			require.True(t, ok)
			require.Equal(t, want[fmt.Sprint(level, "|", id)], agg{free, largest}, "level %d domain %s", level, id)
			for sub := level + 1; sub < len(place.IDs); sub++ {
				got, wantSubs := v.SubDomainCounts(level, n.Node.Name, sub), subs[fmt.Sprint(level, "|", id, "|", sub)]
				if len(got) == 0 && len(wantSubs) == 0 {
					continue
				}
				require.Equal(t, wantSubs, got, "level %d domain %s: member nodes per level-%d domain", level, id, sub)
			}
		}
	}
}

// Hardware unlike the HGX and NVL72 fixtures the planner was written for.
func TestPlanOnNodesWithSmallIslands(t *testing.T) {
	// H100 NVL: four NVLink-bridged pairs per node. A TP=2 prefill and
	// TP=2 decode fit one node; a TP=4 engine fits no island at all.
	_, v := clusterOf(t, `nodes:
- {name: nvl, count: 2, shape: h100-nvl, zone: z1, spine: s1, leaf: l1}
`)
	plan, err := v.PlanUnit(topology.DefaultCostModel(), unit(unitPod("p", true, 2), unitPod("d", false, 2)))
	require.NoError(t, err)
	require.Equal(t, plan.Nodes["p"], plan.Nodes["d"])
	_, err = v.PlanUnit(topology.DefaultCostModel(), unit(unitPod("p", true, 4), unitPod("d", false, 4)))
	require.ErrorIs(t, err, topology.ErrNoRoom, "no island holds four GPUs")

	// L40S has no NVLink at all: single GPUs only, and a pair pairs over
	// whatever the node shares.
	_, v = clusterOf(t, `nodes:
- {name: l40s, count: 2, shape: l40s, zone: z1, spine: s1, leaf: l1}
`)
	plan, err = v.PlanUnit(topology.DefaultCostModel(), unit(unitPod("p", true, 1), unitPod("d", false, 1)))
	require.NoError(t, err)
	require.Len(t, plan.Nodes, 2)
	_, err = v.PlanUnit(topology.DefaultCostModel(), unit(unitPod("p", true, 2), unitPod("d", false, 2)))
	require.ErrorIs(t, err, topology.ErrNoRoom)
}

func TestPlanOnAMixedFleetWithoutLabels(t *testing.T) {
	// Nodes without zone, spine or leaf labels (an on-prem cluster before
	// anyone labelled it): the NVLink domain still holds a unit, and a unit
	// too big for one has no common level to plan within.
	_, v := clusterOf(t, `nodes:
- {name: hgx, count: 2, shape: hgx-h100}
- {name: tray, count: 4, shape: gb200-tray, nvlinkDomain: rack9}
`)
	spec := unit(unitPod("p0", true, 4), unitPod("p1", true, 4), unitPod("d0", false, 4), unitPod("d1", false, 4))
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Equal(t, "rack9", plan.Domain, "16 GPUs fit only the rack's one NVLink domain")
	big := unit(unitPod("p0", true, 8), unitPod("d0", false, 8), unitPod("p1", true, 8), unitPod("d1", false, 8), unitPod("p2", true, 8))
	_, err = v.PlanUnit(topology.DefaultCostModel(), big)
	require.ErrorIs(t, err, topology.ErrNoRoom, "the plugin then evaluates every node")
}

func TestPlanSplitsASubUnitNoBoardHolds(t *testing.T) {
	// A prefill and its two decodes (TP2 each) need 6 GPUs; no board has
	// them. The prefill keeps one decode beside it on the board with 4
	// free, and only the other decode pairs over the leaf. Placed pod by
	// pod on the tightest boards, the prefill took the 2-GPU board alone.
	_, v := clusterOf(t, `nodes:
- {name: four, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3]}
- {name: two, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3, 4, 5]}
`)
	spec := unit(unitPod("p0", true, 2), unitPod("d0", false, 2), unitPod("d1", false, 2))
	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Equal(t, "four", plan.Nodes["p0"])
	require.Equal(t, map[topology.PathClass]int{topology.LevelNVLinkDomain: 1, topology.LevelLeaf: 1}, classes(v, spec, plan))
}

// A plan leaves alone the GPUs another plan promised to pods not reserved
// yet: two units planned back to back do not get the same board.
func TestPlanLeavesHeldGPUsAlone(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: a, shape: hgx-h100, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1]}
- {name: b, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	first := unit(unitPod("u1/p", true, 2), unitPod("u1/d", false, 4))
	plan1, err := v.PlanUnit(topology.DefaultCostModel(), first)
	require.NoError(t, err)
	require.Equal(t, "a", plan1.Nodes["u1/p"], "the tightest board")
	require.Equal(t, "a", plan1.Nodes["u1/d"])

	second := unit(unitPod("u2/p", true, 2), unitPod("u2/d", false, 4))
	for _, name := range []string{"u1/p", "u1/d"} {
		held := first.Pods[0]
		if name == "u1/d" {
			held = first.Pods[1]
		}
		held.Node = plan1.Nodes[name]
		second.Held = append(second.Held, held)
	}
	plan2, err := v.PlanUnit(topology.DefaultCostModel(), second)
	require.NoError(t, err)
	require.Equal(t, "b", plan2.Nodes["u2/p"], "board a is promised to u1")
	require.Equal(t, "b", plan2.Nodes["u2/d"])

	// Without the holds both units would be planned on a.
	second.Held = nil
	plan3, err := v.PlanUnit(topology.DefaultCostModel(), second)
	require.NoError(t, err)
	require.Equal(t, "a", plan3.Nodes["u2/p"])
}

// A replica unit is priced over every prefill→decode pair, a pool over each
// decode's nearest prefill: 2P2D of TP4 engines needs two boards, and of
// its four pairs two cross the leaf however it is placed.
func TestPlanPricesReplicaUnitsOverEveryPair(t *testing.T) {
	_, v := clusterOf(t, `nodes:
- {name: a, count: 2, shape: hgx-h100, zone: z1, spine: s1, leaf: l1}
`)
	model := topology.DefaultCostModel()
	nv, leaf := 1/model.Bandwidth("nvlink-domain"), 1/model.Bandwidth("leaf")
	spec := unit(unitPod("u/p0", true, 4), unitPod("u/p1", true, 4), unitPod("u/d0", false, 4), unitPod("u/d1", false, 4))
	plan, err := v.PlanUnit(model, spec)
	require.NoError(t, err)
	require.InDelta(t, 2*nv+2*leaf, plan.Cost, 1e-12*plan.Cost)
	require.InDelta(t, 4*nv, plan.LowerBound, 1e-12*plan.LowerBound)
	require.False(t, plan.Optimal(), "no placement puts all four pairs on NVLink")
	require.NotEqual(t, plan.Nodes["u/p0"], plan.Nodes["u/p1"], "a prefill beside each decode")

	spec.Nearest = true
	plan, err = v.PlanUnit(model, spec)
	require.NoError(t, err)
	require.InDelta(t, 2*nv, plan.Cost, 1e-12*plan.Cost)
	require.True(t, plan.Optimal())
}

// A unit whose GPUs a DRA allocator picks first-fit is planned by that
// pick: nvl-a has GPU 0 held, so the allocator would give a TP=2 claim
// GPUs 1 and 2, across two NVLink pairs, although three whole pairs are
// free; nvl-b and nvl-c have one pair each. By free pairs the unit fits
// nvl-a alone; by the allocator's pick it goes to nvl-b and nvl-c.
func TestPlanFollowsTheAllocatorsOrder(t *testing.T) {
	c, v := clusterOf(t, `nodes:
- {name: nvl-a, shape: h100-nvl, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0]}
- {name: nvl-b, shape: h100-nvl, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3, 4, 5]}
- {name: nvl-c, shape: h100-nvl, zone: z1, spine: s1, leaf: l1, allocatedGPUs: [0, 1, 2, 3, 4, 5]}
`)
	firstFit := func(p topology.UnitPod) topology.UnitPod { p.Request.FirstFit = true; return p }
	spec := unit(firstFit(unitPod("p", true, 2)), firstFit(unitPod("d", false, 2)))

	plan, err := v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"p": "nvl-a", "d": "nvl-a"}, plan.Nodes, "no order known: tandem's own pick of pairs")

	for _, node := range []string{"nvl-a", "nvl-b", "nvl-c"} {
		view, ok := c.Node(node)
		require.True(t, ok)
		var order []topology.DeviceID
		for _, g := range view.GPUs.GPUs {
			order = append(order, topology.DeviceID{UUID: g.UUID})
		}
		c.SetAllocationOrder(node, order)
	}
	plan, err = v.PlanUnit(topology.DefaultCostModel(), spec)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"nvl-b", "nvl-c"}, []string{plan.Nodes["p"], plan.Nodes["d"]})

	// A request the allocator does not fill first-fit (a claim with
	// constraints, or device-plugin GPUs) is planned as before.
	plan, err = v.PlanUnit(topology.DefaultCostModel(), unit(unitPod("p", true, 2), unitPod("d", false, 2)))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"p": "nvl-a", "d": "nvl-a"}, plan.Nodes)
}
