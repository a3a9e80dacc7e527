package nodeagent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
)

// NodeTopology condition types the agent sets.
const (
	ConditionGPUsDiscovered      = "GPUsDiscovered"
	ConditionNICsDiscovered      = "NICsDiscovered"
	ConditionLeafDiscovered      = "LeafDiscovered"
	ConditionGPUAllocationsKnown = "GPUAllocationsKnown"
	// ConditionGPUDirectRDMAReady is set on the NodeTopology and, with the
	// same status, reason and message, on the Node.
	ConditionGPUDirectRDMAReady = "GPUDirectRDMAReady"
)

const maxMessage = 1024

// Status builds the NodeTopology status from the discovery. prev are the
// conditions last published, so unchanged conditions keep their transition
// time; the heartbeat is left zero for the publisher to set.
func (d *Discovery) Status(prev []metav1.Condition, now time.Time) v1alpha1.NodeTopologyStatus {
	var st v1alpha1.NodeTopologyStatus
	for _, g := range d.GPUs.GPUs {
		if len(st.GPUs) == v1alpha1.MaxGPUs {
			break
		}
		st.GPUs = append(st.GPUs, apiGPU(g))
	}
	for _, n := range d.NICs {
		if len(st.NICs) == v1alpha1.MaxNICs {
			break
		}
		nic := v1alpha1.NIC{
			Name: n.Name, Port: int32(n.Port.Port), PCIBusID: n.PCIBusID, DataDirectPCIBusID: n.DataDirectBDF, LinkLayer: n.LinkLayer,
			State: n.State, RateGbps: int32(n.RateGbps), NUMANode: int32(n.NUMANode), NodeGUID: n.NodeGUID,
			Leaf: n.Leaf.Leaf, LeafSource: n.Leaf.Source, Rail: int32(n.Rail),
		}
		if len(n.NetDev) <= 15 {
			nic.NetDev = n.NetDev
		}
		if nic.LinkLayer == "" {
			// An unreadable link_layer (reported in NICsDiscovered) must not
			// make the whole object invalid; ConnectX ports default to IB.
			nic.LinkLayer = v1alpha1.LinkLayerInfiniBand
		}
		st.NICs = append(st.NICs, nic)
	}
	st.PCIePaths = slices.Clone(d.Paths)
	st.GPUCount, st.NICCount = int32(len(st.GPUs)), int32(len(st.NICs))
	st.NVLinkDomain = d.NVLinkDomain
	st.Leaf, st.Spine = d.Fabric.Leaf, d.Fabric.Spine
	st.GPUDirectRDMA = v1alpha1.GPUDirectRDMA{Ready: d.GPUDirect.Ready, Mode: d.GPUDirect.Mode, Checks: slices.Clone(d.GPUDirect.Checks),
		GPUs: publishedGPUReadiness(d.GPUDirect.GPUs, st.GPUs, st.NICs)}
	st.GPUAllocations = slices.Clone(d.Allocations)

	st.Conditions = slices.Clone(prev)
	for _, c := range d.conditions() {
		c.LastTransitionTime = metav1.NewTime(now)
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st
}

func apiGPU(g gpu.GPU) v1alpha1.GPU {
	out := v1alpha1.GPU{
		Index: int32(g.Index), UUID: g.UUID, PCIBusID: g.PCIBusID, NUMANode: int32(g.NUMANode),
		Model: g.Model, MemoryMiB: g.MemoryMiB, MIGMode: v1alpha1.MIGDisabled, Island: int32(g.Island),
	}
	if g.MIGEnabled {
		out.MIGMode = v1alpha1.MIGEnabled
	}
	for _, l := range g.NVLinks {
		if len(out.NVLinks) == v1alpha1.MaxNVLinks {
			break
		}
		nl := v1alpha1.NVLink{Link: int32(l.Link), State: v1alpha1.NVLinkInactive, RemotePCIBusID: l.RemotePCIBusID}
		if l.Active {
			nl.State = v1alpha1.NVLinkActive
			nl.RemoteType = v1alpha1.NVLinkRemote(l.RemoteType)
		}
		out.NVLinks = append(out.NVLinks, nl)
	}
	for _, p := range g.Peers {
		out.NVLinkPeers = append(out.NVLinkPeers, int32(p))
	}
	if f := g.Fabric; f != nil {
		out.Fabric = &v1alpha1.GPUFabric{ClusterUUID: f.ClusterUUID, CliqueID: int64(f.CliqueID), State: v1alpha1.FabricState(f.State), Status: f.Status}
	}
	return out
}

func cond(t string, ok bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
}

func (d *Discovery) conditions() []metav1.Condition {
	return []metav1.Condition{d.gpuCondition(), d.nicCondition(), d.leafCondition(), d.allocCondition(), d.GPUDirectCondition()}
}

func (d *Discovery) gpuCondition() metav1.Condition {
	switch {
	case errors.Is(d.GPUErr, gpu.ErrLibraryNotFound):
		return cond(ConditionGPUsDiscovered, false, "NVMLNotFound", d.GPUErr.Error()+" (is the NVIDIA driver installed?)")
	case d.GPUErr != nil:
		return cond(ConditionGPUsDiscovered, false, "NVMLError", d.GPUErr.Error())
	case len(d.GPUs.Lost) > 0:
		var msgs []string
		reason := "GPUUnreadable"
		for _, l := range d.GPUs.Lost {
			msgs = append(msgs, l.Err.Error())
			if errors.Is(l.Err, gpu.ErrGPULost) {
				reason = "GPULost"
			}
		}
		return cond(ConditionGPUsDiscovered, false, reason, strings.Join(msgs, "; "))
	}
	var warnings []string
	for _, g := range d.GPUs.GPUs {
		for _, w := range g.Warnings {
			warnings = append(warnings, fmt.Sprintf("GPU %d: %s", g.Index, w))
		}
	}
	if len(warnings) > 0 {
		return cond(ConditionGPUsDiscovered, false, "GPUAttributesUnreadable", strings.Join(warnings, "; "))
	}
	return cond(ConditionGPUsDiscovered, true, "AllGPUsRead", fmt.Sprintf("%d GPUs", len(d.GPUs.GPUs)))
}

func (d *Discovery) nicCondition() metav1.Condition {
	if err := errors.Join(d.NICErr, d.PCIErr); err != nil {
		return cond(ConditionNICsDiscovered, false, "SysfsUnreadable", err.Error())
	}
	return cond(ConditionNICsDiscovered, true, "AllNICsRead", fmt.Sprintf("%d RDMA NIC ports", len(d.NICs)))
}

// leafCondition says what the agent knows of the node's place in the fabric.
// A node whose NICs reach several leaves with none holding a majority (a
// rail-optimised fabric) is reported as MultiRail, True when every NIC's leaf
// is known, so that an empty .status.leaf says why it is empty.
func (d *Discovery) leafCondition() metav1.Condition {
	var unknown []string
	onLeaf := 0
	for _, n := range d.NICs {
		switch n.Leaf.Leaf {
		case "":
			unknown = append(unknown, n.Name)
		case d.Fabric.Leaf:
			onLeaf++
		}
	}
	var missing string
	if len(unknown) > 0 {
		missing = "no leaf for " + strings.Join(unknown, ", ")
		if d.LeafErr != nil {
			missing += ": " + d.LeafErr.Error()
		}
	}
	switch {
	case len(d.NICs) == 0:
		return cond(ConditionLeafDiscovered, false, "NoNICs", "no RDMA NIC to find a leaf for")
	case len(unknown) == len(d.NICs) && d.LeafErr != nil:
		return cond(ConditionLeafDiscovered, false, "LeafSourcesFailed", d.LeafErr.Error())
	case len(unknown) == len(d.NICs):
		return cond(ConditionLeafDiscovered, false, "LeafUnknown", "no leaf source knows this node's NICs")
	case d.Fabric.MultiRail():
		msg := fmt.Sprintf("%d NICs reach %d leaves and none holds a majority of them, as on a rail-optimised fabric: the node has no single leaf, so none is published", len(d.NICs), d.Fabric.Leaves)
		if missing != "" {
			msg += "; " + missing
		}
		return cond(ConditionLeafDiscovered, len(unknown) == 0, "MultiRail", msg)
	case len(unknown) > 0:
		return cond(ConditionLeafDiscovered, false, "SomeLeavesUnknown", missing)
	case onLeaf < len(d.NICs):
		return cond(ConditionLeafDiscovered, true, "LeafFound", fmt.Sprintf("leaf %s for %d of %d NICs", d.Fabric.Leaf, onLeaf, len(d.NICs)))
	case len(d.NICs) == 1:
		return cond(ConditionLeafDiscovered, true, "LeafFound", fmt.Sprintf("leaf %s for the one NIC", d.Fabric.Leaf))
	}
	return cond(ConditionLeafDiscovered, true, "LeafFound", fmt.Sprintf("leaf %s for %d NICs", d.Fabric.Leaf, len(d.NICs)))
}

func (d *Discovery) allocCondition() metav1.Condition {
	if d.AllocErr != nil {
		return cond(ConditionGPUAllocationsKnown, false, "PodResourcesUnavailable", d.AllocErr.Error())
	}
	if d.SliceErr != nil {
		return cond(ConditionGPUAllocationsKnown, false, "ResourceSlicesUnavailable", fmt.Sprintf("%d pods hold GPUs, not counting those allocated through DRA: %v", len(d.Allocations), d.SliceErr))
	}
	var notes []string
	reason := "PodResourcesListed"
	if n := len(d.ForeignDevices); n > 0 {
		reason = "ForeignDevicesDropped"
		notes = append(notes, fmt.Sprintf("%d allocated devices name no GPU this discovery read and are not published (MIG devices, a GPU gone from the bus, GPUs unreadable, DRA devices no ResourceSlice gives a GPU uuid): %s",
			n, strings.Join(d.ForeignDevices[:min(n, 4)], ", ")))
	}
	if n := len(d.SharedDevices); n > 0 {
		if reason == "PodResourcesListed" {
			reason = "SharedDevicesMerged"
		}
		notes = append(notes, fmt.Sprintf("%d GPUs held by several pods are published for the first of them only: %s", n, strings.Join(d.SharedDevices[:min(n, 4)], ", ")))
	}
	msg := fmt.Sprintf("%d pods hold GPUs", len(d.Allocations))
	if len(notes) > 0 {
		msg += "; " + strings.Join(notes, "; ")
	}
	return cond(ConditionGPUAllocationsKnown, true, reason, msg)
}

// GPUDirectCondition summarises the GPUDirect checks. Its status is the
// node's readiness, which the gpudirect-rdma label also carries: True with
// reason AllChecksPassed, or PassedWithUnknownChecks when a check the ACS
// policy lets pass could not be read (named in the message, so that a ready
// node that was not fully verified says so); False with the first failed
// check's reason. The message lists every check that did not pass.
func (d *Discovery) GPUDirectCondition() metav1.Condition {
	failed := d.GPUDirect.Failed()
	if len(failed) == 0 {
		return cond(ConditionGPUDirectRDMAReady, true, "AllChecksPassed", fmt.Sprintf("mode %s, %d checks passed", d.GPUDirect.Mode, len(d.GPUDirect.Checks)))
	}
	var msgs []string
	reason := ""
	for _, c := range failed {
		msgs = append(msgs, fmt.Sprintf("%s %s (%s): %s", c.Name, c.Result, c.Reason, c.Message))
		if reason == "" && c.Result == v1alpha1.CheckFail {
			reason = c.Reason
		}
	}
	if d.GPUDirect.Ready {
		return cond(ConditionGPUDirectRDMAReady, true, "PassedWithUnknownChecks", fmt.Sprintf("mode %s; not verified: %s", d.GPUDirect.Mode, strings.Join(msgs, "; ")))
	}
	if reason == "" {
		reason = failed[0].Reason
	}
	return cond(ConditionGPUDirectRDMAReady, false, reason, strings.Join(msgs, "; "))
}

// StatusEqual compares two statuses ignoring the heartbeat.
func StatusEqual(a, b v1alpha1.NodeTopologyStatus) bool {
	a.LastHeartbeatTime, b.LastHeartbeatTime = metav1.Time{}, metav1.Time{}
	return equality.Semantic.DeepEqual(a, b)
}

// publishedGPUReadiness keeps the per-GPU readiness of the GPUs published,
// naming only NICs published, so the object stays valid on a node with more
// devices than the API's bounds.
func publishedGPUReadiness(all []v1alpha1.GPUDirectGPU, gpus []v1alpha1.GPU, nics []v1alpha1.NIC) []v1alpha1.GPUDirectGPU {
	gpuOK := make(map[int32]bool, len(gpus))
	for _, g := range gpus {
		gpuOK[g.Index] = true
	}
	nicOK := make(map[string]bool, len(nics))
	for _, n := range nics {
		nicOK[n.Name] = true
	}
	var out []v1alpha1.GPUDirectGPU
	for _, r := range all {
		if !gpuOK[r.GPU] {
			continue
		}
		r.NICs = slices.DeleteFunc(slices.Clone(r.NICs), func(n string) bool { return !nicOK[n] })
		r.BlockingChecks = slices.Clone(r.BlockingChecks)
		out = append(out, r)
	}
	return out
}
