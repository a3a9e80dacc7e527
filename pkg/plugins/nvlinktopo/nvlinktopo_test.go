package nvlinktopo

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tandem-sched/tandem/apis/config"
	topologyv1alpha1 "github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/clusterdesc"
	"github.com/tandem-sched/tandem/pkg/scheduler/topologysource"
	"github.com/tandem-sched/tandem/pkg/topology"
)

const gpu v1.ResourceName = "nvidia.com/gpu"

func validArgs() config.NVLinkTopoArgs {
	return config.NVLinkTopoArgs{
		GPUResourceName:   string(gpu),
		RDMAResourceNames: []string{"rdma/ib"},
		IslandPolicy:      config.IslandRequired,
		MaxPCIeLevel:      "PXB",
		MaxTopologyAge:    metav1.Duration{Duration: 5 * time.Minute},
		ScoreWeights:      config.NVLinkTopoScoreWeights{IslandFit: 3, NICProximity: 2, NICBandwidth: 1},
	}
}

func TestGPURequest(t *testing.T) {
	tests := []struct {
		name string
		pod  *v1.Pod
		want int64
	}{
		{
			name: "no containers",
			pod:  st.MakePod().Name("p").Obj(),
			want: 0,
		},
		{
			name: "no GPU request",
			pod:  st.MakePod().Name("p").Req(map[v1.ResourceName]string{v1.ResourceCPU: "4"}).Obj(),
			want: 0,
		},
		{
			name: "another vendor's GPUs do not count",
			pod:  st.MakePod().Name("p").Req(map[v1.ResourceName]string{"amd.com/gpu": "8"}).Obj(),
			want: 0,
		},
		{
			name: "one container",
			pod:  st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "2"}).Obj(),
			want: 2,
		},
		{
			name: "containers are summed",
			pod: st.MakePod().Name("p").
				Req(map[v1.ResourceName]string{gpu: "2"}).
				Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).
				Req(map[v1.ResourceName]string{gpu: "4"}).Obj(),
			want: 6,
		},
		{
			name: "an init container larger than the containers wins",
			pod: st.MakePod().Name("p").
				InitReq(map[v1.ResourceName]string{gpu: "8"}).
				Req(map[v1.ResourceName]string{gpu: "2"}).
				Req(map[v1.ResourceName]string{gpu: "2"}).Obj(),
			want: 8,
		},
		{
			name: "init containers take the max, not the sum",
			pod: st.MakePod().Name("p").
				InitReq(map[v1.ResourceName]string{gpu: "3"}).
				InitReq(map[v1.ResourceName]string{gpu: "5"}).
				Req(map[v1.ResourceName]string{gpu: "2"}).Obj(),
			want: 5,
		},
		{
			name: "a smaller init container does not add",
			pod: st.MakePod().Name("p").
				InitReq(map[v1.ResourceName]string{gpu: "1"}).
				Req(map[v1.ResourceName]string{gpu: "4"}).Obj(),
			want: 4,
		},
		{
			name: "only an init container",
			pod:  st.MakePod().Name("p").InitReq(map[v1.ResourceName]string{gpu: "1"}).Obj(),
			want: 1,
		},
		{
			name: "a sidecar adds to the containers",
			pod: st.MakePod().Name("p").
				SidecarReq(map[v1.ResourceName]string{gpu: "1"}).
				Req(map[v1.ResourceName]string{gpu: "2"}).Obj(),
			want: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, GPURequest(tt.pod, gpu))
		})
	}
}

func TestPreFilter(t *testing.T) {
	tests := []struct {
		name     string
		gpuName  string
		pod      *v1.Pod
		wantCode fwk.Code
		wantGPUs int64
	}{
		{
			name:     "pod without GPUs is skipped",
			gpuName:  string(gpu),
			pod:      st.MakePod().Name("p").Req(map[v1.ResourceName]string{v1.ResourceCPU: "1"}).Obj(),
			wantCode: fwk.Skip,
		},
		{
			name:     "pod with GPUs",
			gpuName:  string(gpu),
			pod:      st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "4"}).Obj(),
			wantCode: fwk.Success,
			wantGPUs: 4,
		},
		{
			name:    "malformed island-policy annotation is unresolvable",
			gpuName: string(gpu),
			pod: st.MakePod().Name("p").Annotation(AnnotationIslandPolicy, "Always").
				Req(map[v1.ResourceName]string{gpu: "4"}).Obj(),
			wantCode: fwk.UnschedulableAndUnresolvable,
		},
		{
			name:     "GPUs under another resource name than configured are skipped",
			gpuName:  "amd.com/gpu",
			pod:      st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "4"}).Obj(),
			wantCode: fwk.Skip,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := validArgs()
			args.GPUResourceName = tt.gpuName
			pl, err := New(args, nil, clocktesting.NewFakePassiveClock(time.Now()))
			require.NoError(t, err)
			state := framework.NewCycleState()
			res, status := pl.PreFilter(context.Background(), state, tt.pod, nil)
			require.Nil(t, res)
			require.Equal(t, tt.wantCode, status.Code(), status.Message())
			s, err := readPreFilterState(state)
			if tt.wantCode != fwk.Success {
				require.Error(t, err, "no state may be written for a skipped or rejected pod")
				return
			}
			require.NoError(t, err)
			require.EqualValues(t, tt.wantGPUs, s.request.Count)
		})
	}
}

// nodeTopology is a well-formed, idle HGX H100 NodeTopology for node name
// whose last heartbeat is at heartbeat (none when zero), so that only its
// age decides whether a GPU pod fits.
func nodeTopology(t *testing.T, name string, heartbeat time.Time) *topologyv1alpha1.NodeTopology {
	t.Helper()
	// Quoted: YAML 1.1 reads a bare n or y as a boolean.
	c, err := clusterdesc.Parse([]byte(`nodes: [{name: "` + name + `", shape: hgx-h100, leaf: leaf-1}]`))
	require.NoError(t, err)
	nodes := c.Build(time.Now())
	require.Len(t, nodes, 1)
	nt := nodes[0].Topology
	require.NotNil(t, nt)
	require.Equal(t, name, nt.Name)
	nt.Status.LastHeartbeatTime = metav1.Time{}
	if !heartbeat.IsZero() {
		nt.Status.LastHeartbeatTime = metav1.NewTime(heartbeat)
	}
	return nt
}

func TestFilter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		topologies   func(t *testing.T) []*topologyv1alpha1.NodeTopology
		wantCode     fwk.Code
		wantMessages []string
	}{
		{
			name:         "no NodeTopologies at all",
			wantCode:     fwk.UnschedulableAndUnresolvable,
			wantMessages: []string{ReasonNoTopology},
		},
		{
			name: "only another node has a NodeTopology",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "other", now)}
			},
			wantCode:     fwk.UnschedulableAndUnresolvable,
			wantMessages: []string{ReasonNoTopology},
		},
		{
			name: "no heartbeat yet",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", time.Time{})}
			},
			wantCode:     fwk.UnschedulableAndUnresolvable,
			wantMessages: []string{"no heartbeat"},
		},
		{
			name: "heartbeat older than maxTopologyAge",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", now.Add(-10*time.Minute))}
			},
			wantCode:     fwk.UnschedulableAndUnresolvable,
			wantMessages: []string{"stale", "no heartbeat within maxTopologyAge 5m0s"},
		},
		{
			name: "heartbeat just past maxTopologyAge",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", now.Add(-5*time.Minute-time.Millisecond))}
			},
			wantCode:     fwk.UnschedulableAndUnresolvable,
			wantMessages: []string{"stale", "maxTopologyAge 5m0s"},
		},
		{
			name: "heartbeat exactly maxTopologyAge old",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", now.Add(-5*time.Minute))}
			},
			wantCode: fwk.Success,
		},
		{
			name: "fresh heartbeat",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", now.Add(-30*time.Second))}
			},
			wantCode: fwk.Success,
		},
		{
			name: "heartbeat in 2100",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))}
			},
			wantCode:     fwk.UnschedulableAndUnresolvable,
			wantMessages: []string{ReasonHeartbeatFromFuture},
		},
		{
			name: "heartbeat just beyond the accepted clock skew",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", now.Add(MaxClockSkew+time.Millisecond))}
			},
			wantCode:     fwk.UnschedulableAndUnresolvable,
			wantMessages: []string{ReasonHeartbeatFromFuture},
		},
		{
			name: "heartbeat ahead by the accepted clock skew",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", now.Add(MaxClockSkew))}
			},
			wantCode: fwk.Success,
		},
		{
			name: "heartbeat right now",
			topologies: func(t *testing.T) []*topologyv1alpha1.NodeTopology {
				return []*topologyv1alpha1.NodeTopology{nodeTopology(t, "n", now), nodeTopology(t, "other", time.Time{})}
			},
			wantCode: fwk.Success,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			if tt.topologies != nil {
				for _, nt := range tt.topologies(t) {
					require.NoError(t, indexer.Add(nt))
				}
			}
			pl, err := New(validArgs(), modelOf(indexer), clocktesting.NewFakePassiveClock(now))
			require.NoError(t, err)

			pod := st.MakePod().Name("p").Namespace("default").Req(map[v1.ResourceName]string{gpu: "2"}).Obj()
			state := framework.NewCycleState()
			_, status := pl.PreFilter(context.Background(), state, pod, nil)
			require.True(t, status.IsSuccess(), status.Message())

			nodeInfo := framework.NewNodeInfo()
			nodeInfo.SetNode(st.MakeNode().Name("n").Obj())
			status = pl.Filter(context.Background(), state, pod, nodeInfo)
			require.Equal(t, tt.wantCode, status.Code(), status.Message())
			for _, want := range tt.wantMessages {
				require.Contains(t, status.Message(), want)
			}
		})
	}
}

func TestFilterWithoutPreFilterState(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pl, err := New(validArgs(), modelOf(indexer), clocktesting.NewFakePassiveClock(time.Now()))
	require.NoError(t, err)
	nodeInfo := framework.NewNodeInfo()
	nodeInfo.SetNode(st.MakeNode().Name("n").Obj())
	pod := st.MakePod().Name("p").Obj()
	status := pl.Filter(context.Background(), framework.NewCycleState(), pod, nodeInfo)
	require.Equal(t, fwk.Error, status.Code())
	require.Contains(t, status.Message(), string(preFilterStateKey))
}

func TestNewFactoryRejectsInvalidArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     runtime.Object
		wantErrs []string
	}{
		{
			name: "invalid island policy",
			args: func() runtime.Object {
				a := validArgs()
				a.IslandPolicy = "Always"
				return &a
			}(),
			wantErrs: []string{"NVLinkTopo: ", `pluginConfig[NVLinkTopo].args.islandPolicy: Unsupported value: "Always"`},
		},
		{
			name: "zero maxTopologyAge",
			args: func() runtime.Object {
				a := validArgs()
				a.MaxTopologyAge = metav1.Duration{}
				return &a
			}(),
			wantErrs: []string{"pluginConfig[NVLinkTopo].args.maxTopologyAge"},
		},
		{
			name:     "wrong args type",
			args:     &config.PDAffinityArgs{},
			wantErrs: []string{"want args of type NVLinkTopoArgs", "*config.PDAffinityArgs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Validation comes before the factory touches the source or
			// the handle, so neither needs a cluster: a nil handle would
			// panic if it were reached.
			factory := NewFactory(topologysource.New(time.Second), clocktesting.NewFakePassiveClock(time.Now()))
			pl, err := factory(context.Background(), tt.args, nil)
			require.Nil(t, pl)
			require.Error(t, err)
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// Only pods that need what a NodeTopology promises are kept off a node
// without a fresh one.
func TestMissingTopologyRejectsOnlyPodsThatNeedIt(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	require.NoError(t, indexer.Add(nodeTopology(t, "stale", now.Add(-time.Hour))))
	pl, err := New(validArgs(), modelOf(indexer), clocktesting.NewFakePassiveClock(now))
	require.NoError(t, err)
	for _, tc := range []struct {
		name       string
		pod        *v1.Pod
		wantReject bool
	}{
		{"one GPU", st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "1"}).Obj(), false},
		{"one GPU over RDMA", st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "1"}).Annotation(AnnotationRDMA, "true").Obj(), true},
		{"two GPUs on an island", st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "2"}).Obj(), true},
		{"two GPUs anywhere", st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "2"}).Annotation(AnnotationIslandPolicy, "Ignore").Obj(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, node := range []string{"missing", "stale"} {
				state := framework.NewCycleState()
				_, status := pl.PreFilter(context.Background(), state, tc.pod, nil)
				require.True(t, status.IsSuccess(), status.Message())
				nodeInfo := framework.NewNodeInfo()
				nodeInfo.SetNode(st.MakeNode().Name(node).Obj())
				status = pl.Filter(context.Background(), state, tc.pod, nodeInfo)
				require.Equal(t, tc.wantReject, !status.IsSuccess(), "node %s: %s", node, status.Message())
			}
		})
	}
}

// modelOf feeds the NodeTopology objects in an indexer to a placement
// model, as the scheduler's informer does.
func modelOf(indexer cache.Indexer) *topology.Cluster {
	c := topology.NewCluster()
	for _, obj := range indexer.List() {
		nt := obj.(*topologyv1alpha1.NodeTopology)
		c.SetReport(nt.Name, topologysource.ReportOf(nt))
	}
	return c
}

// A pod PDAffinity placed by its unit's plan is not scored here: the plan
// chose its node by island fit with the whole unit in view, and a fallback
// that fits the one pod tighter would otherwise outscore it.
func TestPreScoreSkipsPlannedPods(t *testing.T) {
	pl, err := New(validArgs(), nil, clocktesting.NewFakePassiveClock(time.Now()))
	require.NoError(t, err)
	pod := st.MakePod().Name("p").Req(map[v1.ResourceName]string{gpu: "2"}).Obj()

	state := framework.NewCycleState()
	_, status := pl.PreFilter(context.Background(), state, pod, nil)
	require.True(t, status.IsSuccess(), status.Message())
	require.True(t, pl.PreScore(context.Background(), state, pod, nil).IsSuccess(), "an unplanned GPU pod is scored")

	state.Write(topologysource.PlanStateKey, &topologysource.PlanState{Node: "n1"})
	require.Equal(t, fwk.Skip, pl.PreScore(context.Background(), state, pod, nil).Code())
}

// A heartbeat beyond MaxClockSkew ahead is reported once, as a Warning event
// on the Node, and again only after it came back within the skew.
func TestHeartbeatFromTheFutureIsReported(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	pl, err := New(validArgs(), nil, clocktesting.NewFakePassiveClock(now))
	require.NoError(t, err)
	recorder := events.NewFakeRecorder(10)
	fresh := nodeTopology(t, "n", now)
	future := nodeTopology(t, "n", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))

	pl.reportSkew(klog.Background(), recorder, nil, fresh)
	pl.reportSkew(klog.Background(), recorder, fresh, future)
	pl.reportSkew(klog.Background(), recorder, future, future)
	pl.reportSkew(klog.Background(), recorder, future, fresh)
	pl.reportSkew(klog.Background(), recorder, fresh, future)
	require.Len(t, recorder.Events, 2)
	e := <-recorder.Events
	require.Contains(t, e, "Warning "+EventReasonHeartbeatFromFuture+" "+ReasonHeartbeatFromFuture)
	require.Contains(t, e, "heartbeat 2100-01-01T00:00:00Z")
	require.Contains(t, ReasonHeartbeatFromFuture, MaxClockSkew.String(), "the reason names the skew")
}
