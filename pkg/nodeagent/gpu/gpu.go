// Package gpu discovers a node's GPUs, their NVLink links and the NVLink
// islands they form, through NVML behind the Library interface. The NVML
// implementation lives in gpu/nvmlgpu (cgo); Fake is a pure-Go stand-in.
package gpu

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"k8s.io/klog/v2"
)

// Errors a Library wraps so that callers can tell the cases apart.
var (
	// ErrLibraryNotFound: NVML could not be loaded (no driver on the node).
	ErrLibraryNotFound = errors.New("NVML library not found")
	// ErrGPULost: the GPU has fallen off the bus (NVML_ERROR_GPU_IS_LOST).
	ErrGPULost = errors.New("GPU has fallen off the bus")
)

// Library is the part of NVML the agent reads.
type Library interface {
	Init() error
	Shutdown() error
	DeviceCount() (int, error)
	// Device reads everything about the GPU at index. An error wrapping
	// ErrGPULost means the GPU is gone; any other error also loses the
	// device. Attributes that fail alone are reported in DeviceInfo.Warnings.
	Device(index int) (DeviceInfo, error)
	// NVLinkP2P reports whether GPU a can reach GPU b peer-to-peer over NVLink.
	NVLinkP2P(a, b int) (bool, error)
}

// RemoteType is what sits at the far end of an NVLink link.
type RemoteType string

const (
	RemoteGPU      RemoteType = "GPU"
	RemoteNVSwitch RemoteType = "NVSwitch"
	RemoteUnknown  RemoteType = "Unknown"
)

// FabricState is the multi-node NVLink fabric registration state.
type FabricState string

const (
	FabricNotSupported FabricState = "NotSupported"
	FabricNotStarted   FabricState = "NotStarted"
	FabricInProgress   FabricState = "InProgress"
	FabricCompleted    FabricState = "Completed"
)

// NVLink is one link of a GPU.
type NVLink struct {
	Link       int
	Active     bool
	RemoteType RemoteType
	// RemotePCIBusID is the far end's PCI id as NVML reports it
	// (00000000:1A:00.0) or in sysfs form; Discover turns it into sysfs
	// form, or "" where the far end has no PCI id (an NVSwitch).
	RemotePCIBusID string
}

// Fabric is a GPU's place in a multi-node NVLink fabric.
type Fabric struct {
	ClusterUUID string
	CliqueID    uint32
	State       FabricState
	// Status is NVML's fabric health summary ("Success" or an error text).
	Status string
}

// DeviceInfo is what NVML says about one GPU.
type DeviceInfo struct {
	Index int
	UUID  string
	// PCIBusID in sysfs form: 0000:1a:00.0.
	PCIBusID string
	// NUMANode is -1 when NVML does not say.
	NUMANode   int
	Model      string
	MemoryMiB  int64
	MIGEnabled bool
	NVLinks    []NVLink
	// Fabric is nil on GPUs without a multi-node NVLink fabric.
	Fabric *Fabric
	// Warnings are attributes that could not be read; the rest is valid.
	Warnings []string
}

// GPU is a discovered GPU with its NVLink peers and island.
type GPU struct {
	DeviceInfo
	// Peers are the indexes of GPUs reached over NVLink with P2P enabled.
	Peers []int
	// Island is the index into Inventory.Islands.
	Island int
}

// LostGPU is a GPU NVML counts but cannot read.
type LostGPU struct {
	Index int
	Err   error
}

// Inventory is every GPU NVML reported.
type Inventory struct {
	GPUs []GPU
	// Islands partition the GPUs by NVLink reachability, each sorted, ordered
	// by their lowest GPU index.
	Islands [][]int
	Lost    []LostGPU
}

// Discover reads every GPU from lib. An error means NVML itself is unusable
// (no driver); a single lost GPU is recorded in Inventory.Lost instead.
func Discover(ctx context.Context, lib Library) (Inventory, error) {
	logger := klog.FromContext(ctx)
	if err := lib.Init(); err != nil {
		return Inventory{}, fmt.Errorf("initialising NVML: %w", err)
	}
	defer func() {
		if err := lib.Shutdown(); err != nil {
			logger.Error(err, "Shutting down NVML")
		}
	}()
	n, err := lib.DeviceCount()
	if err != nil {
		return Inventory{}, fmt.Errorf("counting GPUs: %w", err)
	}
	var inv Inventory
	for i := range n {
		info, err := lib.Device(i)
		if err != nil {
			logger.Error(err, "Reading GPU", "index", i)
			inv.Lost = append(inv.Lost, LostGPU{Index: i, Err: err})
			continue
		}
		info.Index = i
		normalizeLinks(&info)
		inv.GPUs = append(inv.GPUs, GPU{DeviceInfo: info})
	}
	linkPeers(ctx, lib, &inv)
	return inv, nil
}

// normalizeLinks puts every active link's remote PCI id in sysfs form. The
// id NVML gives an NVSwitch link (FFFFFFFF:FF:FF.0, no PCI device) becomes ""
// without a warning; any other malformed id is a warning naming the link.
func normalizeLinks(info *DeviceInfo) {
	for i := range info.NVLinks {
		l := &info.NVLinks[i]
		if l.RemotePCIBusID == "" {
			continue
		}
		if IsNoPCIDevice(l.RemotePCIBusID) {
			// Only NVSwitch links report it; an old driver without
			// nvmlDeviceGetNvLinkRemoteDeviceType leaves the type unknown.
			l.RemotePCIBusID = ""
			if l.RemoteType == RemoteUnknown || l.RemoteType == "" {
				l.RemoteType = RemoteNVSwitch
			}
			continue
		}
		id, err := NormalizePCIBusID(l.RemotePCIBusID)
		if err != nil {
			info.Warnings = append(info.Warnings, fmt.Sprintf("NVLink %d remote: %v", l.Link, err))
			l.RemotePCIBusID = ""
			continue
		}
		l.RemotePCIBusID = id
	}
}

// noPCIDevice is the PCI id NVML reports for the far end of a link that is
// not a PCI device, such as an NVSwitch on an HGX baseboard: all ones.
var noPCIDevice = regexp.MustCompile(`^(?i)f{4,8}:ff:ff\.[0-7]$`)

// IsNoPCIDevice reports whether id is the all-ones PCI id NVML gives a link
// whose far end has no PCI address.
func IsNoPCIDevice(id string) bool { return noPCIDevice.MatchString(strings.TrimSpace(id)) }

// linkPeers fills Peers and Islands. Candidates are GPUs at the far end of an
// active link, and, for a GPU with an active link to an NVSwitch, every other
// such GPU; a candidate becomes a peer when NVML reports NVLink P2P to it.
func linkPeers(ctx context.Context, lib Library, inv *Inventory) {
	logger := klog.FromContext(ctx)
	byBusID := make(map[string]int, len(inv.GPUs))
	for i := range inv.GPUs {
		byBusID[inv.GPUs[i].PCIBusID] = i
	}
	switched := make([]bool, len(inv.GPUs))
	direct := make([][]int, len(inv.GPUs))
	for i := range inv.GPUs {
		for _, l := range inv.GPUs[i].NVLinks {
			if !l.Active {
				continue
			}
			j, isGPU := byBusID[l.RemotePCIBusID]
			switch {
			case l.RemoteType == RemoteNVSwitch:
				switched[i] = true
			case isGPU && j != i && (l.RemoteType == RemoteGPU || l.RemoteType == RemoteUnknown):
				direct[i] = append(direct[i], j)
			}
		}
	}
	uf := newUnionFind(len(inv.GPUs))
	for i := range inv.GPUs {
		cands := slices.Clone(direct[i])
		if switched[i] {
			for j := range inv.GPUs {
				if j != i && switched[j] {
					cands = append(cands, j)
				}
			}
		}
		slices.Sort(cands)
		cands = slices.Compact(cands)
		for _, j := range cands {
			ok, err := lib.NVLinkP2P(inv.GPUs[i].Index, inv.GPUs[j].Index)
			if err != nil {
				logger.V(2).Info("NVLink P2P status unreadable", "gpu", inv.GPUs[i].Index, "peer", inv.GPUs[j].Index, "err", err)
				inv.GPUs[i].Warnings = append(inv.GPUs[i].Warnings, fmt.Sprintf("NVLink P2P status to GPU %d: %v", inv.GPUs[j].Index, err))
				continue
			}
			if ok {
				inv.GPUs[i].Peers = append(inv.GPUs[i].Peers, inv.GPUs[j].Index)
				uf.union(i, j)
			}
		}
	}
	islandOf := map[int]int{}
	for i := range inv.GPUs {
		root := uf.find(i)
		id, ok := islandOf[root]
		if !ok {
			id = len(inv.Islands)
			islandOf[root] = id
			inv.Islands = append(inv.Islands, nil)
		}
		inv.GPUs[i].Island = id
		inv.Islands[id] = append(inv.Islands[id], inv.GPUs[i].Index)
	}
}

type unionFind struct{ parent []int }

func newUnionFind(n int) *unionFind {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return &unionFind{parent: p}
}

func (u *unionFind) find(i int) int {
	for u.parent[i] != i {
		u.parent[i] = u.parent[u.parent[i]]
		i = u.parent[i]
	}
	return i
}

func (u *unionFind) union(a, b int) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	// The lower root wins, so an island's root is its first GPU.
	if rb < ra {
		ra, rb = rb, ra
	}
	u.parent[rb] = ra
}

var busIDPattern = regexp.MustCompile(`^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$`)

// NormalizePCIBusID turns NVML's 00000000:1A:00.0 into sysfs's 0000:1a:00.0.
func NormalizePCIBusID(id string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(id))
	m := busIDPattern.FindStringSubmatch(s)
	if m == nil {
		return "", fmt.Errorf("PCI bus id %q is not domain:bus:device.function", id)
	}
	domain := m[1]
	if len(domain) > 4 {
		if strings.Trim(domain[:len(domain)-4], "0") != "" {
			return "", fmt.Errorf("PCI bus id %q has a domain wider than 16 bits", id)
		}
		domain = domain[len(domain)-4:]
	} else if len(domain) < 4 {
		domain = strings.Repeat("0", 4-len(domain)) + domain
	}
	return fmt.Sprintf("%s:%s:%s.%s", domain, m[2], m[3], m[4]), nil
}
