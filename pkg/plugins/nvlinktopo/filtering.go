package nvlinktopo

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tandem-sched/tandem/pkg/topology"
)

type preFilterState struct {
	request topology.GPURequest
	// allOfNode: a ResourceClaim asks for every GPU of the node, which
	// request.Count does not include (see requestOn).
	allOfNode bool
	// fits holds Filter's verdict per node (a topology.Fit) for Score, which
	// runs on the nodes Filter passed.
	fits sync.Map
}

// Clone returns the state itself: nothing in it depends on the pods on a
// node, which is what clones (preemption's dry runs) vary.
func (s *preFilterState) Clone() fwk.StateData { return s }

// PreFilter reads the pod's GPU request and its overrides once per cycle and
// skips pods without GPUs. A malformed override leaves the pod unschedulable
// with a message that names the annotation.
func (pl *NVLinkTopo) PreFilter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	req, dra, err := pl.podRequest(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if req.Count == 0 && !dra.AllOfNode {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if pl.activeLease != nil {
		if err := pl.activeLease.Check(); err != nil {
			// An error, not a verdict on the pod: it is retried after
			// backoff, and placed once this scheduler is the only one.
			return nil, fwk.AsStatus(err)
		}
	}
	cycleState.Write(preFilterStateKey, &preFilterState{request: req, allOfNode: dra.AllOfNode})
	pl.waiting.add(pod)
	return nil, nil
}

// PreFilterExtensions returns nil: GPU accounting comes from the model, not
// from the pods PreFilter would be told about.
func (pl *NVLinkTopo) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Reasons a node is rejected, as they appear in the pod's FailedScheduling
// event. They are constant strings, so the event counts nodes per reason.
const (
	ReasonNoTopology    = "node has no NodeTopology (is tandem-agent running on it?)"
	reasonNeverReported = "NodeTopology has no heartbeat from tandem-agent"
	reasonMalformed     = "NodeTopology is malformed"
	// ReasonHeartbeatFromFuture: an agent whose clock runs fast would
	// otherwise keep its node trusted until its heartbeat's time came,
	// long after the agent died.
	ReasonHeartbeatFromFuture = "NodeTopology heartbeat is more than 1m0s ahead of the scheduler's clock (is the node's clock fast?)"
)

// MaxClockSkew is how far ahead of the scheduler's clock a heartbeat may be
// and still count as fresh: clocks kept by NTP agree within far less.
const MaxClockSkew = time.Minute

// Filter rejects a node whose NodeTopology is missing or stale, or whose
// free GPUs cannot be arranged the way the pod needs.
func (pl *NVLinkTopo) Filter(ctx context.Context, cycleState fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s, err := readPreFilterState(cycleState)
	if err != nil {
		return fwk.AsStatus(err)
	}
	node := nodeInfo.Node().Name
	req := pl.requestOn(s, node)
	fit, unfit, status := pl.fit(ctx, node, req)
	if status != nil {
		if !needsTopology(req) {
			// A single GPU without RDMA needs nothing only the topology
			// can promise; the device plugin's count is enough.
			return nil
		}
		return status
	}
	if unfit != nil {
		code := fwk.UnschedulableAndUnresolvable
		if unfit.Resolvable {
			code = fwk.Unschedulable
		}
		klog.FromContext(ctx).V(5).Info("GPUs do not fit", "pod", klog.KObj(pod), "node", node, "reason", unfit.Reason)
		return fwk.NewStatus(code, unfit.Reason)
	}
	s.fits.Store(node, fit)
	return nil
}

// needsTopology says whether a request needs guarantees only a fresh
// NodeTopology can give: several GPUs on one NVLink island, or a NIC beside
// each GPU for GPUDirect RDMA.
func needsTopology(req topology.GPURequest) bool {
	return req.NeedRDMA || (req.Count > 1 && req.Island != topology.IslandIgnore)
}

// fit evaluates the request on a node: the fit, or why it does not fit, or
// a status when the node's topology cannot be trusted at all. The status is
// UnschedulableAndUnresolvable: no preemption fixes a missing report.
func (pl *NVLinkTopo) fit(ctx context.Context, node string, req topology.GPURequest) (topology.Fit, *topology.Unfit, *fwk.Status) {
	fit, unfit, view, ok := pl.cluster.Fit(node, req)
	if reason := pl.untrusted(view, ok); reason != "" {
		if view.Err != nil {
			klog.FromContext(ctx).V(4).Info("Malformed NodeTopology", "node", node, "err", view.Err)
		}
		return topology.Fit{}, nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reason)
	}
	return fit, unfit, nil
}

// untrusted says why a node's report cannot be used, or "".
func (pl *NVLinkTopo) untrusted(view topology.NodeView, usable bool) string {
	switch {
	case !view.Reported:
		return ReasonNoTopology
	case !usable:
		return fmt.Sprintf("%s: %v", reasonMalformed, view.Err)
	}
	return pl.staleReason(view.Heartbeat)
}

// staleReason says why a report with this heartbeat is too old to trust,
// or "" when it is fresh.
func (pl *NVLinkTopo) staleReason(heartbeat time.Time) string {
	if heartbeat.IsZero() {
		return reasonNeverReported
	}
	age := pl.clock.Since(heartbeat)
	if age < -MaxClockSkew {
		return ReasonHeartbeatFromFuture
	}
	if age > pl.args.MaxTopologyAge.Duration {
		// The same words for every stale node, so the pod's event counts
		// them instead of listing each age.
		return "NodeTopology is stale: no heartbeat within maxTopologyAge " + pl.args.MaxTopologyAge.Duration.String()
	}
	return ""
}

// Fresh says whether a report with this heartbeat can be trusted now.
func (pl *NVLinkTopo) Fresh(_ string, heartbeat time.Time) bool {
	return pl.staleReason(heartbeat) == ""
}

func readPreFilterState(cycleState fwk.CycleState) (*preFilterState, error) {
	data, err := cycleState.Read(preFilterStateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %q from cycle state: %w", preFilterStateKey, err)
	}
	s, ok := data.(*preFilterState)
	if !ok {
		return nil, fmt.Errorf("%+v cannot be converted to nvlinktopo.preFilterState", data)
	}
	return s, nil
}
