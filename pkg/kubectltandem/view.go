// Package kubectltandem is `kubectl tandem`: a read-only view, for
// operators, of what tandem's scheduler sees — each node's free GPUs per
// NVLink island, GPUDirect readiness and heartbeat, and each P/D group's
// prefill→decode pairs with the path class and modeled KV-transfer time of
// the scheduler's own classifier and cost model — as a table, JSON, or a
// picture of the fabric tree.
package kubectltandem

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/bench"
	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/plugins/pdaffinity"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// Options say how to read the cluster.
type Options struct {
	// Model is the cost model (and its levels) pairs are priced with; the
	// scheduler's PDAffinity levelPreset decides which.
	Model topology.CostModel
	// PromptTokens and BytesPerToken size the KV cache one request moves.
	PromptTokens  int
	BytesPerToken int64
	// LabelPresets are the serving stacks whose labels name roles and
	// groups; nil for all, as PDAffinity's default.
	LabelPresets []string
	// GPUResource is the extended resource pods request GPUs by.
	GPUResource v1.ResourceName
	// Namespace limits pods to one namespace; "" reads every namespace.
	Namespace string
	// Now is when heartbeat ages are measured from.
	Now time.Time
}

// DefaultOptions are the scheduler's defaults: tandem's levels and the
// Llama-3-70B BF16 KV cache of a 4096-token prompt.
func DefaultOptions() Options {
	return Options{
		Model:         topology.DefaultCostModel(),
		PromptTokens:  4096,
		BytesPerToken: topology.Llama3_70B_BF16().BytesPerToken(),
		GPUResource:   "nvidia.com/gpu",
	}
}

// View is the cluster as `kubectl tandem` shows it.
type View struct {
	// Levels are the topology level names, coarse to fine.
	Levels       []string `json:"levels"`
	PromptTokens int      `json:"promptTokens"`
	KVBytes      float64  `json:"kvBytes"`
	Nodes        []Node   `json:"nodes"`
	Groups       []Group  `json:"groups"`
	// Warnings name objects the view could not read in full.
	Warnings []string `json:"warnings,omitempty"`
}

// Node is one node.
type Node struct {
	Name string `json:"name"`
	// Domains are the node's domain at each level (View.Levels), "" where
	// it has no label.
	Domains []string `json:"domains"`
	// Reported: the node has a NodeTopology. Error names the NodeTopology
	// field that makes the report unusable; the GPU counts are then zero.
	Reported bool   `json:"reported"`
	Error    string `json:"error,omitempty"`
	GPUs     int    `json:"gpus"`
	FreeGPUs int    `json:"freeGPUs"`
	// Islands are the NVLink islands, in the order the scheduler keeps them.
	Islands []Island `json:"islands,omitempty"`
	// GPUDirectReady is the agent's GPUDirect RDMA verdict, and
	// GPUDirectReason the first failed check when it is not ready.
	GPUDirectReady  bool   `json:"gpuDirectReady"`
	GPUDirectReason string `json:"gpuDirectReason,omitempty"`
	// Heartbeat is the agent's last heartbeat and HeartbeatAge its age;
	// both zero when it never reported one.
	Heartbeat    *metav1.Time  `json:"heartbeat,omitempty"`
	HeartbeatAge time.Duration `json:"heartbeatAgeNanos,omitempty"`
}

// Island is one NVLink island of a node.
type Island struct {
	// ID is the agent's island id (status.gpus[].island).
	ID   int32 `json:"id"`
	GPUs int   `json:"gpus"`
	Free int   `json:"free"`
}

// Group is one P/D group: the pods that exchange KV caches.
type Group struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Prefills  int    `json:"prefills"`
	Decodes   int    `json:"decodes"`
	// Pending counts the group's pods not bound yet.
	Pending int    `json:"pending"`
	Pairs   []Pair `json:"pairs"`
}

// Pair is a bound decode and the bound prefill of its unit (or, in pool
// mode, its group) whose KV transfer is the fastest.
type Pair struct {
	// Unit is the replica-mode unit; "" in pool mode.
	Unit        string `json:"unit,omitempty"`
	Prefill     string `json:"prefill,omitempty"`
	PrefillNode string `json:"prefillNode,omitempty"`
	Decode      string `json:"decode"`
	DecodeNode  string `json:"decodeNode"`
	// Class is the path class; "unpaired" when no prefill of the unit is
	// bound, and Transfer is then negative.
	Class    topology.PathClass `json:"class"`
	Transfer time.Duration      `json:"transferNanos"`
}

// Collect reads nodes, NodeTopologies and pods (list calls only) and builds
// the view.
func Collect(ctx context.Context, kube kubernetes.Interface, tandem versioned.Interface, o Options) (*View, error) {
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	nts, err := tandem.TandemV1alpha1().NodeTopologies().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodetopologies.tandem.dev: %w", err)
	}
	pods, err := kube.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return Build(nodes.Items, nts.Items, pods.Items, o)
}

// Build is the view of the given objects.
//
// A node's free GPUs are its NodeTopology's islands less the GPUs the
// kubelet reports allocated and, for each bound pod the report does not
// name yet, the GPUs the scheduler's own fit would give it: the placement
// model's view of the node, as the scheduler's ledger keeps it.
func Build(nodes []v1.Node, nts []topologyv1alpha1.NodeTopology, pods []v1.Pod, o Options) (*View, error) {
	if err := o.Model.Validate(); err != nil {
		return nil, fmt.Errorf("cost model: %w", err)
	}
	if o.PromptTokens <= 0 {
		return nil, fmt.Errorf("prompt tokens %d must be positive", o.PromptTokens)
	}
	if o.BytesPerToken <= 0 {
		return nil, fmt.Errorf("KV cache bytes per token %d must be positive", o.BytesPerToken)
	}
	if o.GPUResource == "" {
		o.GPUResource = "nvidia.com/gpu"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	members, err := pdaffinity.NewMemberReader(o.LabelPresets)
	if err != nil {
		return nil, err
	}
	levels := o.Model.Levels
	v := &View{PromptTokens: o.PromptTokens, KVBytes: float64(o.PromptTokens) * float64(o.BytesPerToken)}
	for _, l := range levels {
		v.Levels = append(v.Levels, l.Name)
	}

	c := topology.NewCluster()
	labels := map[string]map[string]string{}
	for _, n := range nodes {
		labels[n.Name] = n.Labels
		c.SetNodeLabels(n.Name, n.Labels)
	}
	reports := map[string]*topologyv1alpha1.NodeTopology{}
	for i := range nts {
		nt := &nts[i]
		if _, ok := labels[nt.Name]; !ok {
			v.Warnings = append(v.Warnings, fmt.Sprintf("NodeTopology %s: no Node of that name", nt.Name))
			continue
		}
		reports[nt.Name] = nt
		c.SetReport(nt.Name, topologysource.ReportOf(nt))
	}

	// Bound pods the report does not name hold GPUs the scheduler placed
	// them on; the biggest first, as each takes the tightest island.
	type boundPod struct {
		pod  *v1.Pod
		gpus int
	}
	var bound []boundPod
	for i := range pods {
		p := &pods[i]
		if p.Spec.NodeName == "" || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		n, err := topologysource.GPUCount(p, o.GPUResource)
		if err != nil {
			v.Warnings = append(v.Warnings, err.Error())
			continue
		}
		if n > 0 {
			bound = append(bound, boundPod{p, n})
		}
	}
	slices.SortFunc(bound, func(a, b boundPod) int {
		return cmp.Or(cmp.Compare(b.gpus, a.gpus), cmp.Compare(a.pod.Namespace, b.pod.Namespace), cmp.Compare(a.pod.Name, b.pod.Name))
	})
	for _, b := range bound {
		name := b.pod.Namespace + "/" + b.pod.Name
		nt := reports[b.pod.Spec.NodeName]
		if nt == nil || reportNames(nt, name) {
			continue
		}
		req := topology.GPURequest{Count: b.gpus, Island: topology.IslandPreferred, MaxNICLevel: topology.PCIeLevelSYS}
		_, unfit, reason := c.Reserve(string(b.pod.UID), name, b.pod.Spec.NodeName, req, topology.Usable)
		switch {
		case reason != "":
			// The node's own row says why its report is unusable.
		case unfit != nil:
			v.Warnings = append(v.Warnings, fmt.Sprintf("pod %s on node %s: its %d GPUs do not fit the node's free GPUs: %s",
				name, b.pod.Spec.NodeName, b.gpus, unfit.Reason))
		}
	}

	for _, n := range nodes {
		v.Nodes = append(v.Nodes, nodeRow(c, levels, n, reports[n.Name], o.Now))
	}
	slices.SortFunc(v.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range v.Nodes {
		if n.Error != "" {
			v.Warnings = append(v.Warnings, n.Error)
		}
	}

	v.Groups, err = groups(v, members, labels, pods, o)
	return v, err
}

func reportNames(nt *topologyv1alpha1.NodeTopology, pod string) bool {
	for _, a := range nt.Status.GPUAllocations {
		if a.Pod == pod {
			return true
		}
	}
	return false
}

func nodeRow(c *topology.Cluster, levels topology.Levels, n v1.Node, nt *topologyv1alpha1.NodeTopology, now time.Time) Node {
	row := Node{Name: n.Name, Domains: levels.PathOf(n.Labels)}
	view, ok := c.Node(n.Name)
	if !ok || !view.Reported || nt == nil {
		return row
	}
	row.Reported = true
	if hb := nt.Status.LastHeartbeatTime; !hb.IsZero() {
		row.Heartbeat = &hb
		row.HeartbeatAge = max(now.Sub(hb.Time), 0).Truncate(time.Second)
	}
	row.GPUDirectReady = nt.Status.GPUDirectRDMA.Ready
	if view.Err != nil {
		row.Error = fmt.Sprintf("NodeTopology %s: %v", nt.Name, view.Err)
		return row
	}
	if view.GPUs == nil {
		return row
	}
	row.GPUDirectReady = view.GPUs.GPUDirectReady
	row.GPUDirectReason = view.GPUs.GPUDirectReason
	row.GPUs = len(view.GPUs.GPUs)
	for k, free := range view.GPUs.FreeByIsland(view.Used) {
		members := view.GPUs.Islands[k]
		row.Islands = append(row.Islands, Island{ID: nt.Status.GPUs[members[0]].Island, GPUs: len(members), Free: free})
		row.FreeGPUs += free
	}
	return row
}

// groups reads every pod's membership as PDAffinity does and pairs the
// bound pods with the bench's analyzer (the scheduler's classifier and cost
// model): in a replica unit every prefill with every decode, in a pool each
// decode with the nearest prefill.
func groups(v *View, members *pdaffinity.MemberReader, labels map[string]map[string]string, pods []v1.Pod, o Options) ([]Group, error) {
	type key struct{ ns, group string }
	byKey := map[key]*Group{}
	var order []key
	var bpods []bench.Pod
	unitOf := map[string]string{}
	groupOf := map[string]key{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		m, ok, err := members.Read(p)
		if !ok {
			continue
		}
		if err != nil {
			v.Warnings = append(v.Warnings, fmt.Sprintf("pod %s/%s: %v", p.Namespace, p.Name, err))
			continue
		}
		k := key{p.Namespace, m.Group}
		g := byKey[k]
		if g == nil {
			g = &Group{Namespace: p.Namespace, Name: m.Group}
			byKey[k] = g
			order = append(order, k)
		}
		if m.Role == pdaffinity.RolePrefill {
			g.Prefills++
		} else {
			g.Decodes++
		}
		if p.Spec.NodeName == "" {
			g.Pending++
		}
		name := p.Namespace + "/" + p.Name
		instance := p.Namespace + "\x00" + m.Group
		if m.Unit != "" {
			instance += "\x00" + m.Unit
			unitOf[name] = m.Unit
		}
		groupOf[name] = k
		bpods = append(bpods, bench.Pod{Name: name, Instance: instance, Role: bench.Role(m.Role), Node: p.Spec.NodeName, Pool: m.Unit == ""})
	}
	var bnodes []bench.Node
	for name, l := range labels {
		bnodes = append(bnodes, bench.Node{Name: name, Labels: l})
	}
	a := bench.Analyzer{Model: o.Model, KVBytes: v.KVBytes}
	for _, pr := range a.Analyze(bnodes, bpods).Pairs {
		g := byKey[groupOf[pr.Decode]]
		g.Pairs = append(g.Pairs, Pair{
			Unit:    unitOf[pr.Decode],
			Prefill: shortName(pr.Prefill), PrefillNode: pr.PrefillNode,
			Decode: shortName(pr.Decode), DecodeNode: pr.DecodeNode,
			Class: pr.Class, Transfer: pr.Transfer,
		})
	}
	out := make([]Group, 0, len(order))
	for _, k := range order {
		g := byKey[k]
		slices.SortFunc(g.Pairs, func(a, b Pair) int { return cmp.Or(cmp.Compare(a.Unit, b.Unit), cmp.Compare(a.Decode, b.Decode)) })
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// shortName drops the namespace: a pair's pods share their group's.
func shortName(nsName string) string {
	for i := 0; i < len(nsName); i++ {
		if nsName[i] == '/' {
			return nsName[i+1:]
		}
	}
	return nsName
}
