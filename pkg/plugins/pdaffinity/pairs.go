package pdaffinity

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/tandem-sched/tandem/pkg/metrics"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// ReasonPlaced is the reason of the event each bound P/D pod gets.
const ReasonPlaced = "Placed"

// metricsKVBytes is the request the KV-transfer metric and the Placed
// event price: a 4096-token prompt of Llama-3-70B in BF16, the placement
// benchmark's default request.
var metricsKVBytes = topology.Llama3_70B_BF16().KVBytes(4096)

// boundPod is one bound P/D pod, for pairing.
type boundPod struct {
	pod  *v1.Pod
	node string
}

// instancePods are the bound pods of one instance: a replica unit, or a
// pool's group.
type instancePods struct {
	prefills map[types.UID]boundPod
	// unpaired are bound decodes of a pool no prefill of the pool was bound
	// for yet.
	unpaired map[types.UID]boundPod
	// decodes are the bound decodes of a replica unit.
	decodes map[types.UID]boundPod
}

// pairBook counts prefill→decode pairs as the placement model prices them,
// each when its second pod binds. In a replica unit every prefill pairs
// with every decode: its proxy sends requests through all of them. In a
// pool each decode pairs once: binding after prefills, with the one its KV
// cache reaches fastest (the pool's router can choose it); binding first,
// with the first prefill that binds after it. It is the count the
// pairs_placed_total metric and the Placed events give.
type pairBook struct {
	mu         sync.Mutex
	byInstance map[string]*instancePods
	instanceOf map[types.UID]string
}

func newPairBook() *pairBook {
	return &pairBook{byInstance: map[string]*instancePods{}, instanceOf: map[types.UID]string{}}
}

// pair is one prefill→decode pair and its path.
type pair struct {
	prefill, decode boundPod
	class           topology.PathClass
	transfer        time.Duration
}

// bound records a bound pod of a replica unit (pool false) or of a pool and
// returns the pairs it completes.
func (b *pairBook) bound(instance string, pod *v1.Pod, node string, prefill, pool bool, price func(a, b string) (topology.PathClass, time.Duration)) []pair {
	b.mu.Lock()
	defer b.mu.Unlock()
	inst := b.byInstance[instance]
	if inst == nil {
		inst = &instancePods{prefills: map[types.UID]boundPod{}, unpaired: map[types.UID]boundPod{}, decodes: map[types.UID]boundPod{}}
		b.byInstance[instance] = inst
	}
	b.instanceOf[pod.UID] = instance
	me := boundPod{pod: pod, node: node}
	if !pool {
		var out []pair
		if prefill {
			inst.prefills[pod.UID] = me
			for _, d := range inst.decodes {
				c, t := price(node, d.node)
				out = append(out, pair{prefill: me, decode: d, class: c, transfer: t})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].decode.pod.Name < out[j].decode.pod.Name })
		} else {
			inst.decodes[pod.UID] = me
			for _, p := range inst.prefills {
				c, t := price(p.node, node)
				out = append(out, pair{prefill: p, decode: me, class: c, transfer: t})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].prefill.pod.Name < out[j].prefill.pod.Name })
		}
		return out
	}
	if prefill {
		inst.prefills[pod.UID] = me
		out := make([]pair, 0, len(inst.unpaired))
		for uid, d := range inst.unpaired {
			c, t := price(node, d.node)
			out = append(out, pair{prefill: me, decode: d, class: c, transfer: t})
			delete(inst.unpaired, uid)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].decode.pod.Name < out[j].decode.pod.Name })
		return out
	}
	var best *pair
	for _, p := range inst.prefills {
		c, t := price(p.node, node)
		if best == nil || t < best.transfer || (t == best.transfer && p.pod.Name < best.prefill.pod.Name) {
			best = &pair{prefill: p, decode: me, class: c, transfer: t}
		}
	}
	if best == nil {
		inst.unpaired[pod.UID] = me
		return nil
	}
	return []pair{*best}
}

// forget drops a deleted pod; its instance goes with its last pod.
func (b *pairBook) forget(uid types.UID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	instance, ok := b.instanceOf[uid]
	if !ok {
		return
	}
	delete(b.instanceOf, uid)
	inst := b.byInstance[instance]
	if inst == nil {
		// A paired decode of an instance whose prefills are all gone.
		return
	}
	delete(inst.prefills, uid)
	delete(inst.unpaired, uid)
	delete(inst.decodes, uid)
	if len(inst.prefills) == 0 && len(inst.unpaired) == 0 && len(inst.decodes) == 0 {
		// Paired decodes are not kept: with no prefill left the instance
		// starts over.
		delete(b.byInstance, instance)
	}
}

// instanceKey names the pod's instance: its replica unit, or its pool.
func instanceKey(pod *v1.Pod, m Member) string {
	if m.Unit != "" {
		return pod.Namespace + "/" + m.Unit
	}
	return pod.Namespace + "/pool:" + m.Group
}

// price classes the path from a prefill on node a to a decode on node b
// with the model's pair classifier and prices one request's KV cache on it.
func (pl *PDAffinity) price(a, b string) (topology.PathClass, time.Duration) {
	var c topology.PathClass
	if pl.domains != nil {
		c = pl.domains.Classify(a, b)
	} else {
		c = pl.classifySnapshot(a, b)
	}
	return c, pl.model.TransferTime(metricsKVBytes, c)
}

// classifySnapshot classes a pair from the snapshot's node labels, for a
// plugin built without the shared model.
func (pl *PDAffinity) classifySnapshot(a, b string) topology.PathClass {
	infos := pl.handle.SnapshotSharedLister().NodeInfos()
	na, errA := infos.Get(a)
	nb, errB := infos.Get(b)
	if errA != nil || errB != nil || na.Node() == nil || nb.Node() == nil {
		return topology.PathNone
	}
	pa, pb := pl.paths.get(na.Node()), pl.paths.get(nb.Node())
	return pl.levels.Classify(pa.path, pb.path, pa.gpuDirect, pb.gpuDirect)
}

// recordPlaced pairs a bound pod, counts the pairs it completes and gives
// it a Placed event naming its partner, path class and modeled KV time.
func (pl *PDAffinity) recordPlaced(ctx context.Context, pod *v1.Pod, m Member, node string) {
	pairs := pl.pairs.bound(instanceKey(pod, m), pod, node, m.Role == RolePrefill, m.Unit == "", pl.price)
	for _, p := range pairs {
		metrics.ObservePair(p.class, p.transfer)
	}
	rec := pl.handle.EventRecorder()
	if rec == nil {
		return
	}
	if len(pairs) == 0 {
		rec.Eventf(pod, nil, v1.EventTypeNormal, ReasonPlaced, "Binding",
			"Placed %s pod on node %s; no %s of its instance is bound yet", m.Role, node, m.Role.opposite())
		return
	}
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		partner := p.prefill
		if m.Role == RolePrefill {
			partner = p.decode
		}
		parts[i] = fmt.Sprintf("paired with %s %s on node %s: path %s, modeled KV transfer %s",
			m.Role.opposite(), partner.pod.Name, partner.node, p.class, p.transfer.Round(10*time.Microsecond))
	}
	related := pairs[0].prefill.pod
	if m.Role == RolePrefill {
		related = pairs[0].decode.pod
	}
	rec.Eventf(pod, related, v1.EventTypeNormal, ReasonPlaced, "Binding",
		"Placed %s pod on node %s; %s", m.Role, node, strings.Join(parts, "; "))
	klog.FromContext(ctx).V(4).Info("Placed", "pod", klog.KObj(pod), "node", node, "pairs", len(pairs))
}

// registerMetrics registers tandem's scheduler metrics and makes every path
// class of levels appear at zero.
func registerMetrics(levels topology.Levels) {
	metrics.Register()
	metrics.InitPathClasses(levels)
}
