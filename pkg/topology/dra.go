package topology

import (
	"strings"
)

// DeviceID names one GPU a Dynamic Resource Allocation driver allocated,
// by what its ResourceSlice publishes of it: the UUID, else the PCI bus id.
type DeviceID struct {
	UUID     string
	PCIBusID string
}

// NormalizePCIBusID writes a PCI bus id as sysfs does (0000:1b:00.0): lower
// case, a four-digit domain. NVML's form (00000000:1B:00.0) and sysfs's
// name the same function.
func NormalizePCIBusID(id string) string {
	id = strings.ToLower(strings.TrimSpace(id))
	domain, rest, ok := strings.Cut(id, ":")
	if !ok || !strings.Contains(rest, ":") {
		return id
	}
	if len(domain) > 4 {
		domain = domain[len(domain)-4:]
	}
	for len(domain) < 4 {
		domain = "0" + domain
	}
	return domain + ":" + rest
}

// Resolve returns the position in n.GPUs of the GPU a device names: by
// UUID, else by PCI bus id.
func (n *NodeGPUs) Resolve(d DeviceID) (int, bool) {
	if d.UUID != "" {
		if i, ok := n.byUUID[d.UUID]; ok {
			return i, true
		}
	}
	if d.PCIBusID != "" {
		if i, ok := n.byPCI[NormalizePCIBusID(d.PCIBusID)]; ok {
			return i, true
		}
	}
	return 0, false
}

// MarkDevices sets the GPUs the devices name as used; a device that names
// no GPU of the node is skipped.
func (n *NodeGPUs) MarkDevices(used Used, devices []DeviceID) {
	for _, d := range devices {
		if i, ok := n.Resolve(d); ok {
			used[i] = true
		}
	}
}

// SetClaim records the GPUs an allocated ResourceClaim (namespace/name)
// holds on node, and drops the ledger entries of the pods it is reserved
// for (their UIDs): the claim now says which GPUs they hold, where the
// ledger had only guessed. An empty node or no devices forgets the claim
// (deallocated or deleted). A claim moves when it is allocated anew on
// another node.
func (c *Cluster) SetClaim(claim, node string, devices []DeviceID, reservedFor []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.claimsAt[claim]; ok && (old != node || len(devices) == 0) {
		delete(c.claimsAt, claim)
		if n, ok := c.nodes[old]; ok {
			delete(n.claims, claim)
			c.updateLocked(n)
		}
	}
	if node == "" || len(devices) == 0 {
		return
	}
	n := c.nodeLocked(node)
	n.claims[claim] = append([]DeviceID(nil), devices...)
	c.claimsAt[claim] = node
	for _, uid := range reservedFor {
		if c.podsAt[uid] == node {
			delete(c.podsAt, uid)
			delete(n.ledger, uid)
		}
	}
	c.updateLocked(n)
}

// SetAllocationOrder records the order in which a DRA allocator tries
// node's GPU devices (the driver's ResourceSlice, device by device); nil
// when it is not known. FirstFit requests are fitted in that order.
func (c *Cluster) SetAllocationOrder(node string, order []DeviceID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if order == nil {
		if n, ok := c.nodes[node]; ok {
			n.order = nil
		}
		return
	}
	c.nodeLocked(node).order = append([]DeviceID(nil), order...)
}

// ClaimGPUs is the number of GPUs the allocated claims hold on node, as far
// as the node's report names them.
func (c *Cluster) ClaimGPUs(node string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nodes[node]
	if !ok || n.gpus == nil {
		return 0
	}
	count := 0
	for _, ids := range n.claims {
		for _, d := range ids {
			if _, ok := n.gpus.Resolve(d); ok {
				count++
			}
		}
	}
	return count
}
