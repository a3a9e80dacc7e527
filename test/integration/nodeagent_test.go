package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/internal/controlplane"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/nodeagent"
	"github.com/tandem-sched/tandem/pkg/nodeagent/fixtures"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpudirect"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
	"github.com/tandem-sched/tandem/pkg/nodeagent/podresources"
	"github.com/tandem-sched/tandem/pkg/topology"
)

// agentWriteCounter counts the requests that change something: everything
// but GET (which covers LIST and WATCH).
type agentWriteCounter struct {
	mu     sync.Mutex
	writes []string
}

func (c *agentWriteCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return agentRoundTripper{rt: rt, c: c}
}

type agentRoundTripper struct {
	rt http.RoundTripper
	c  *agentWriteCounter
}

func (r agentRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		r.c.mu.Lock()
		r.c.writes = append(r.c.writes, req.Method+" "+req.URL.Path)
		r.c.mu.Unlock()
	}
	return r.rt.RoundTrip(req)
}

func (c *agentWriteCounter) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// agentKubelet is a pod-resources server whose answer the test changes.
type agentKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	mu   sync.Mutex
	resp *podresourcesv1.ListPodResourcesResponse
}

func (k *agentKubelet) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.resp, nil
}

func (k *agentKubelet) allocate(pod, uuid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ns, name, _ := strings.Cut(pod, "/")
	k.resp = &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{{
		Name: name, Namespace: ns, Containers: []*podresourcesv1.ContainerResources{{
			Name: "engine", Devices: []*podresourcesv1.ContainerDevices{{ResourceName: "nvidia.com/gpu", DeviceIds: []string{uuid}}},
		}},
	}}}
}

func startAgentKubelet(t *testing.T) (*agentKubelet, string) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "kubelet.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	k := &agentKubelet{resp: &podresourcesv1.ListPodResourcesResponse{}}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, k)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return k, socket
}

// TestNodeAgentPublishesAndOnlyWritesChanges runs the agent's loop on the
// HGX H100 fixture against a real apiserver.
func TestNodeAgentPublishesAndOnlyWritesChanges(t *testing.T) {
	cp := controlplane.StartControlPlane(t)
	ctx := context.Background()
	m, err := fixtures.Build(t.TempDir(), fixtures.HGXH100())
	if err != nil {
		t.Fatal(err)
	}
	nodeName := m.Spec.Hostname
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{
		"network.topology.nvidia.com/tier-0": "leaf-07", "network.topology.nvidia.com/tier-1": "spine-2", "kubernetes.io/hostname": nodeName,
	}}}
	node, err = cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	counter := &agentWriteCounter{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.Wrap(counter.wrap)
	kube := kubernetes.NewForConfigOrDie(cfg)
	tandem := versioned.NewForConfigOrDie(controlplane.JSONConfig(cfg))
	kubelet, socket := startAgentKubelet(t)

	clk := clocktesting.NewFakeClock(time.Now())
	const resync, heartbeat = 10 * time.Second, time.Minute
	syncs := make(chan error, 100)
	agent := &nodeagent.Agent{
		NodeName: nodeName,
		Kube:     kube,
		Discoverer: &nodeagent.Discoverer{
			SysRoot:      m.SysRoot,
			NVML:         m.NVML,
			LeafSources:  []leaf.Source{leaf.Labels{}},
			Checker:      gpudirect.Checker{SysRoot: m.SysRoot, ProcRoot: m.ProcRoot, Config: pci.SysFS{Root: m.SysRoot}},
			PodResources: podresources.Client{Socket: socket, Resource: "nvidia.com/gpu"},
		},
		Publisher:         &nodeagent.Publisher{Kube: kube, Tandem: tandem, Clock: clk},
		Clock:             clk,
		ResyncInterval:    resync,
		HeartbeatInterval: heartbeat,
		OnSync:            func(_ nodeagent.Writes, err error) { syncs <- err },
	}
	waitSync, stopAgent := runAgent(t, ctx, agent, syncs)

	// next advances the fake clock by one resync period and waits for the
	// sync, and for the heartbeat when one is due.
	elapsed := time.Duration(0)
	next := func() {
		t.Helper()
		before := len(counter.snapshot())
		clk.Step(resync)
		elapsed += resync
		waitSync()
		if elapsed%heartbeat == 0 {
			deadline := time.Now().Add(waitTimeout)
			for !slices.ContainsFunc(counter.snapshot()[before:], func(w string) bool { return w == "PATCH /apis/tandem.dev/v1alpha1/nodetopologies/"+nodeName+"/status" }) {
				if time.Now().After(deadline) {
					t.Fatal("no heartbeat")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	// writesDuring runs step and returns the writes it caused.
	writesDuring := func(step func()) []string {
		t.Helper()
		before := len(counter.snapshot())
		step()
		return counter.snapshot()[before:]
	}
	get := func() *v1alpha1.NodeTopology {
		t.Helper()
		nt, err := cp.Tandem.TandemV1alpha1().NodeTopologies().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return nt
	}
	getNode := func() *v1.Node {
		t.Helper()
		n, err := cp.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	check := func(nt *v1alpha1.NodeTopology, name string) string {
		for _, c := range nt.Status.GPUDirectRDMA.Checks {
			if c.Name == name {
				return string(c.Result) + "/" + c.Reason
			}
		}
		return "missing"
	}

	// First publish.
	waitSync()
	if got := counter.snapshot(); len(got) != 4 {
		t.Fatalf("first sync wrote %d times, want create + status + labels + condition: %v", len(got), got)
	}
	nt := get()
	st := nt.Status
	if islands := st.Islands(); st.GPUCount != 8 || st.NICCount != 8 || len(islands) != 1 || len(islands[0]) != 8 {
		t.Errorf("gpus %d nics %d islands %+v", st.GPUCount, st.NICCount, islands)
	}
	for _, p := range st.PCIePaths {
		if (p.NIC == fmt.Sprintf("mlx5_%d", p.GPU)) != (p.Level == v1alpha1.PCIeLevelPIX) {
			t.Errorf("GPU %d - %s is %s", p.GPU, p.NIC, p.Level)
		}
	}
	if !st.GPUDirectRDMA.Ready || st.GPUDirectRDMA.Mode != v1alpha1.GPUDirectDMABuf || st.Leaf != "leaf-07" || st.Spine != "spine-2" || st.NVLinkDomain != nodeName {
		t.Errorf("gpudirect %+v leaf %q spine %q domain %q", st.GPUDirectRDMA, st.Leaf, st.Spine, st.NVLinkDomain)
	}
	if len(nt.OwnerReferences) != 1 || nt.OwnerReferences[0].UID != node.UID || nt.OwnerReferences[0].Kind != "Node" || !*nt.OwnerReferences[0].Controller {
		t.Errorf("owner references %+v", nt.OwnerReferences)
	}
	if st.LastHeartbeatTime.IsZero() || len(st.GPUAllocations) != 0 {
		t.Errorf("heartbeat %v allocations %+v", st.LastHeartbeatTime, st.GPUAllocations)
	}
	n := getNode()
	wantLabels := map[string]string{topology.LabelLeaf: "leaf-07", topology.LabelSpine: "spine-2", topology.LabelNVLinkDomain: nodeName, topology.LabelGPUDirectRDMA: "true"}
	for k, v := range wantLabels {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if n.Labels["kubernetes.io/hostname"] != nodeName {
		t.Error("the label patch touched another label")
	}
	nodeCondition := func(n *v1.Node) string {
		for _, c := range n.Status.Conditions {
			if c.Type == nodeagent.ConditionGPUDirectRDMAReady {
				return string(c.Status) + "/" + c.Reason
			}
		}
		return "missing"
	}
	if got := nodeCondition(n); got != "True/AllChecksPassed" {
		t.Errorf("node condition %s", got)
	}

	// Steady state: 3 minutes of resyncs write nothing but 3 heartbeats.
	steady := func() {
		t.Helper()
		before := len(counter.snapshot())
		for range 18 {
			next()
		}
		time.Sleep(100 * time.Millisecond) // let a stray write show up
		writes := counter.snapshot()[before:]
		if len(writes) != 3 {
			t.Errorf("steady state: %d writes in 3 minutes, want 3 heartbeats: %v", len(writes), writes)
		}
		for _, w := range writes {
			if !strings.HasSuffix(w, "/nodetopologies/"+nodeName+"/status") || !strings.HasPrefix(w, "PATCH") {
				t.Errorf("steady-state write %s is not a heartbeat", w)
			}
		}
	}
	hb := get().Status.LastHeartbeatTime
	steady()
	if got := get().Status.LastHeartbeatTime; !got.After(hb.Time) {
		t.Errorf("heartbeat %v did not advance from %v", got, hb)
	}

	// A NIC port goes down.
	if err := m.SetPortState("mlx5_3", "1: DOWN", "3: Disabled"); err != nil {
		t.Fatal(err)
	}
	writes := writesDuring(next)
	nt = get()
	if nt.Status.NICs[3].State != v1alpha1.PortDown || nt.Status.GPUDirectRDMA.Ready || check(nt, gpudirect.CheckNICPort) != "Fail/NICPortNotActive" {
		t.Errorf("after NIC down: NIC 3 %s, gpudirect %+v", nt.Status.NICs[3].State, nt.Status.GPUDirectRDMA)
	}
	if n := getNode(); n.Labels[topology.LabelGPUDirectRDMA] != "false" || nodeCondition(n) != "False/NICPortNotActive" {
		t.Errorf("after NIC down: label %q condition %s", n.Labels[topology.LabelGPUDirectRDMA], nodeCondition(n))
	}
	if len(writes) != 3 {
		t.Errorf("NIC down: %d writes, want status + label + condition: %v", len(writes), writes)
	}

	// It comes back, and ACS redirect is enabled on a bridge between GPU 5
	// and NIC 5.
	if err := m.SetPortState("mlx5_3", "4: ACTIVE", "5: LinkUp"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetACSControl("0000:62:01.0", fixtures.ACSRedirecting); err != nil {
		t.Fatal(err)
	}
	writes = writesDuring(next)
	nt = get()
	if nt.Status.NICs[3].State != v1alpha1.PortActive || check(nt, gpudirect.CheckACS) != "Fail/ACSRedirectEnabled" || check(nt, gpudirect.CheckNICPort) != "Pass/NICPortsActive" {
		t.Errorf("after ACS redirect: checks %+v", nt.Status.GPUDirectRDMA.Checks)
	}
	if n := getNode(); nodeCondition(n) != "False/ACSRedirectEnabled" || n.Labels[topology.LabelGPUDirectRDMA] != "false" {
		t.Errorf("after ACS redirect: condition %s", nodeCondition(n))
	}
	if len(writes) != 2 {
		t.Errorf("ACS redirect: %d writes, want status + condition (the label stays false): %v", len(writes), writes)
	}

	// ACS is fixed; then the kubelet allocates GPU 2 to a pod.
	if err := m.SetACSControl("0000:62:01.0", fixtures.ACSSourceValidationOnly); err != nil {
		t.Fatal(err)
	}
	if writes := writesDuring(next); len(writes) != 3 || !get().Status.GPUDirectRDMA.Ready {
		t.Errorf("ACS fixed: %d writes, want 3: %v", len(writes), writes)
	}
	kubelet.allocate("llm/decode-0", m.Spec.GPUs[2].UUID)
	writes = writesDuring(next)
	nt = get()
	if len(nt.Status.GPUAllocations) != 1 || nt.Status.GPUAllocations[0].Pod != "llm/decode-0" || nt.Status.GPUAllocations[0].GPUs[0] != m.Spec.GPUs[2].UUID {
		t.Errorf("allocations %+v", nt.Status.GPUAllocations)
	}
	if len(writes) != 1 || !strings.HasPrefix(writes[0], "PUT") {
		t.Errorf("allocation: %d writes, want one status update: %v", len(writes), writes)
	}

	steady()

	// SIGTERM: the agent stops and leaves everything in place.
	before := get()
	if err := stopAgent(); err != nil {
		t.Errorf("Run returned %v", err)
	}
	after := get()
	if after.ResourceVersion != before.ResourceVersion || getNode().Labels[topology.LabelLeaf] != "leaf-07" {
		t.Error("stopping the agent changed what it had published")
	}
}

// TestNodeAgentHealthAndMetrics runs the agent as the command wires it
// (health endpoint, NVML deadline, event recorder) against a real apiserver:
// /readyz and /healthz follow its syncs, /metrics counts its writes (one
// heartbeat a minute in steady state), a condition's change is an event on
// the Node, and a hung NVML call fails /healthz until it returns.
func TestNodeAgentHealthAndMetrics(t *testing.T) {
	cp := controlplane.StartControlPlane(t)
	ctx := context.Background()
	m, err := fixtures.Build(t.TempDir(), fixtures.HGXH100())
	if err != nil {
		t.Fatal(err)
	}
	nodeName := m.Spec.Hostname
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"network.topology.nvidia.com/tier-0": "leaf-07"}}}
	if _, err := cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	tandem := versioned.NewForConfigOrDie(controlplane.JSONConfig(cp.Config))

	clk := clocktesting.NewFakeClock(time.Now())
	const resync, heartbeat = 10 * time.Second, time.Minute
	health := nodeagent.NewHealth(clk, resync+2*nodeagent.DefaultBackoff().Cap, 3*heartbeat)
	nvml := &gpu.Deadline{Lib: m.NVML, Timeout: 200 * time.Millisecond, Clock: clk}
	health.Hung = nvml.Hung
	srv := httptest.NewServer(health.Handler())
	defer srv.Close()
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()

	syncs := make(chan error, 100)
	agent := &nodeagent.Agent{
		NodeName: nodeName,
		Kube:     kube,
		Discoverer: &nodeagent.Discoverer{
			SysRoot:     m.SysRoot,
			NVML:        nvml,
			LeafSources: []leaf.Source{leaf.Labels{}},
			Checker:     gpudirect.Checker{SysRoot: m.SysRoot, ProcRoot: m.ProcRoot, Config: pci.SysFS{Root: m.SysRoot}},
		},
		Publisher:         &nodeagent.Publisher{Kube: kube, Tandem: tandem, Clock: clk},
		Clock:             clk,
		ResyncInterval:    resync,
		HeartbeatInterval: heartbeat,
		Health:            health,
		Recorder:          broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "tandem-agent", Host: nodeName}),
		OnSync:            func(_ nodeagent.Writes, err error) { syncs <- err },
	}
	waitSync, _ := runAgent(t, ctx, agent, syncs)
	fetch := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	metric := func(name string) float64 {
		t.Helper()
		_, body := fetch("/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("metric %s: %v", line, err)
				}
				return f
			}
		}
		return 0
	}
	// The heartbeat is registered after the first sync is reported: wait
	// for the clock's waiters so a step does not miss it.
	next := func() {
		t.Helper()
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		clk.Step(resync)
		waitSync()
	}

	waitSync()
	if code, body := fetch("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the first sync: %d %s", code, body)
	}
	if code, body := fetch("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the first sync: %d %s", code, body)
	}
	for name, want := range map[string]float64{
		`tandem_agent_api_writes_total{kind="nodetopology"}`:           1,
		`tandem_agent_api_writes_total{kind="labels"}`:                 1,
		`tandem_agent_api_writes_total{kind="node-condition"}`:         1,
		`tandem_agent_gpudirect_ready`:                                 1,
		`tandem_agent_gpudirect_check{check="nic-port",result="Pass"}`: 1,
	} {
		if got := metric(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// Steady state, 5 minutes: one heartbeat a minute and nothing else.
	for i := 1; i <= 30; i++ {
		next()
		if i%6 == 0 {
			deadline := time.Now().Add(waitTimeout)
			for metric(`tandem_agent_api_writes_total{kind="heartbeat"}`) < float64(i/6) {
				if time.Now().After(deadline) {
					t.Fatalf("no heartbeat after %d resyncs", i)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	if hb, st := metric(`tandem_agent_api_writes_total{kind="heartbeat"}`), metric(`tandem_agent_api_writes_total{kind="nodetopology"}`); hb != 5 || st != 1 {
		t.Errorf("5 minutes of steady state: %v heartbeats and %v status writes, want 5 and still 1", hb, st)
	}
	t.Logf("steady state: %.1f API writes per minute", metric(`tandem_agent_api_writes_total{kind="heartbeat"}`)/5)

	// A NIC goes down: an event on the Node says so.
	if err := m.SetPortState("mlx5_2", "1: DOWN", "3: Disabled"); err != nil {
		t.Fatal(err)
	}
	next()
	deadline := time.Now().Add(waitTimeout)
	for {
		evs, err := cp.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + nodeName})
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(evs.Items, func(e v1.Event) bool {
			return e.Type == v1.EventTypeWarning && e.Reason == "NICPortNotActive" && strings.HasPrefix(e.Message, "GPUDirectRDMAReady is False (was True)")
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NICPortNotActive event on node %s: %+v", nodeName, evs.Items)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := metric(`tandem_agent_gpudirect_check{check="nic-port",result="Fail"}`); got != 1 {
		t.Errorf("nic-port Fail gauge %v", got)
	}

	// NVML hangs: the sync still publishes (GPUsDiscovered False), and
	// /healthz names the hung call until it returns.
	release := m.NVML.Hang()
	defer release()
	next()
	code, body := fetch("/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "NVML call DeviceCount has not returned") {
		t.Errorf("/healthz with NVML hung: %d %s", code, body)
	}
	nt, err := cp.Tandem.TandemV1alpha1().NodeTopologies().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := findCondition(nt.Status.Conditions, nodeagent.ConditionGPUsDiscovered); c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "did not return within") {
		t.Errorf("GPUsDiscovered with NVML hung: %+v", c)
	}
	release()
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
		if _, _, hung := nvml.Hung(); !hung {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("NVML still hung after release")
		}
	}
	next()
	if code, body := fetch("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after NVML returned: %d %s", code, body)
	}
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// runAgent runs the agent until the test ends or stop is called. waitSync
// waits for its next sync (reported on syncs by its OnSync) and fails the
// test on a sync error or none within waitTimeout; stop cancels the agent
// as SIGTERM does and returns what Run returned.
func runAgent(t *testing.T, ctx context.Context, agent *nodeagent.Agent, syncs <-chan error) (waitSync func(), stop func() error) {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(runCtx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	waitSync = func() {
		t.Helper()
		select {
		case err := <-syncs:
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("no sync")
		}
	}
	return waitSync, stop
}

// TestNodeAgentPublishesDRAAllocations: the kubelet reports a pod's GPUs
// from NVIDIA's DRA driver by pool and device name; the agent finds their
// UUIDs in its node's ResourceSlices, selected by the apiserver on node and
// driver (another node's slice of the same pool and device names is not
// read), and publishes them with the device plugin's.
func TestNodeAgentPublishesDRAAllocations(t *testing.T) {
	cp := controlplane.StartControlPlane(t)
	ctx := context.Background()
	m, err := fixtures.Build(t.TempDir(), fixtures.HGXH100())
	if err != nil {
		t.Fatal(err)
	}
	nodeName := m.Spec.Hostname
	for _, name := range []string{nodeName, "other-gpu-node"} {
		if _, err := cp.Client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kubelet, socket := startAgentKubelet(t)
	agent := &nodeagent.Agent{
		NodeName: nodeName,
		Kube:     cp.Client,
		Discoverer: &nodeagent.Discoverer{
			SysRoot:      m.SysRoot,
			NVML:         m.NVML,
			Checker:      gpudirect.Checker{SysRoot: m.SysRoot, ProcRoot: m.ProcRoot, Config: pci.SysFS{Root: m.SysRoot}},
			PodResources: podresources.Client{Socket: socket, Resource: "nvidia.com/gpu", DRADriver: "gpu.nvidia.com"},
			Slices:       nodeagent.KubeSlices{Kube: cp.Client},
		},
		Publisher: &nodeagent.Publisher{Kube: cp.Client, Tandem: cp.Tandem, Clock: clocktesting.NewFakeClock(time.Now())},
		Clock:     clocktesting.NewFakeClock(time.Now()),
	}
	if _, err := agent.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	nt, err := cp.Tandem.TandemV1alpha1().NodeTopologies().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gpus := nt.Status.GPUs
	mine := clusterdesc.NVIDIAResourceSlice(nt)
	// Another node's slice whose pool and device names are this node's, its
	// uuids shifted by one: read, it would publish the wrong GPUs.
	other := clusterdesc.NVIDIAResourceSlice(nt)
	other.Name, other.Spec.NodeName = "other-gpu-node-gpu.nvidia.com", ptr.To("other-gpu-node")
	for i := range other.Spec.Devices {
		other.Spec.Devices[i].Attributes["uuid"] = resourcev1.DeviceAttribute{StringValue: ptr.To(gpus[(i+1)%len(gpus)].UUID)}
	}
	for _, s := range []*resourcev1.ResourceSlice{other, mine} {
		if _, err := cp.Client.ResourceV1().ResourceSlices().Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	claimGPU := func(dev string) *podresourcesv1.ClaimResource {
		return &podresourcesv1.ClaimResource{DriverName: "gpu.nvidia.com", PoolName: nodeName, DeviceName: dev}
	}
	kubelet.mu.Lock()
	kubelet.resp = &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{
		{Name: "decode-0", Namespace: "llm", Containers: []*podresourcesv1.ContainerResources{{
			Name: "engine", DynamicResources: []*podresourcesv1.DynamicResource{{
				ClaimName: "decode-0-gpus", ClaimNamespace: "llm", ClaimResources: []*podresourcesv1.ClaimResource{claimGPU("gpu-2"), claimGPU("gpu-3")},
			}},
		}}},
		{Name: "prefill-0", Namespace: "llm", Containers: []*podresourcesv1.ContainerResources{{
			Name: "engine", Devices: []*podresourcesv1.ContainerDevices{{ResourceName: "nvidia.com/gpu", DeviceIds: []string{gpus[0].UUID}}},
		}}},
	}}
	kubelet.mu.Unlock()
	if _, err := agent.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if nt, err = cp.Tandem.TandemV1alpha1().NodeTopologies().Get(ctx, nodeName, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []v1alpha1.GPUAllocation{
		{Pod: "llm/decode-0", GPUs: slices.Sorted(slices.Values([]string{gpus[2].UUID, gpus[3].UUID}))},
		{Pod: "llm/prefill-0", GPUs: []string{gpus[0].UUID}},
	}
	if !reflect.DeepEqual(nt.Status.GPUAllocations, want) {
		t.Fatalf("gpuAllocations:\n got %v\nwant %v", nt.Status.GPUAllocations, want)
	}
	for _, c := range nt.Status.Conditions {
		if c.Type == nodeagent.ConditionGPUAllocationsKnown && (c.Status != metav1.ConditionTrue || c.Reason != "PodResourcesListed") {
			t.Errorf("GPUAllocationsKnown: %s/%s: %s", c.Status, c.Reason, c.Message)
		}
	}
}
