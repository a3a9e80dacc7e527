// Package pci reads the PCI tree from sysfs and computes how far apart two
// devices sit, the way NCCL and `nvidia-smi topo -m` name it.
package pci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

var bdfPattern = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// IsBDF reports whether s is a sysfs PCI address such as 0000:1a:00.0.
func IsBDF(s string) bool { return bdfPattern.MatchString(s) }

// Device is a PCI device and where it hangs in the tree.
type Device struct {
	BDF string
	// HostBridge is the root complex the device is under, such as pci0000:00.
	HostBridge string
	// Bridges are the PCI bridges from the root port down to the device's
	// parent, as sysfs nests them.
	Bridges []string
	// LevelBridges are the bridges Level counts: Bridges with the inner level
	// of a Broadcom PEX switch that presents itself as two (see
	// FlattenBroadcom), or the switches of an NCCL topology file. Nil means
	// Bridges.
	LevelBridges []string
	// NUMANode is -1 when the platform does not say.
	NUMANode int
}

func (d Device) levelBridges() []string {
	if d.LevelBridges != nil {
		return d.LevelBridges
	}
	return d.Bridges
}

// SysFS reads PCI devices under a sysfs root (normally /sys).
type SysFS struct {
	Root string
}

// DevicePath is the sysfs directory of a device, through its bus symlink.
func (s SysFS) DevicePath(bdf string) string {
	return filepath.Join(s.Root, "bus", "pci", "devices", bdf)
}

// Device resolves bdf's place in the tree. When only its NUMA node or a
// bridge's ids are unreadable, the returned Device is complete except for
// NUMANode (-1) or the flattening, and the error names the file.
func (s SysFS) Device(bdf string) (Device, error) {
	if !IsBDF(bdf) {
		return Device{}, fmt.Errorf("PCI address %q is not in sysfs form 0000:00:00.0", bdf)
	}
	link := s.DevicePath(bdf)
	resolved, err := filepath.EvalSymlinks(link)
	if err != nil {
		return Device{}, fmt.Errorf("resolving %s: %w", link, err)
	}
	dev, err := parseDevicePath(resolved, bdf)
	if err != nil {
		return Device{}, fmt.Errorf("resolving %s: %w", link, err)
	}
	numa, numaErr := ReadNUMANode(filepath.Join(resolved, "numa_node"))
	dev.NUMANode = numa
	// A bridge without id files (a tree that is not a kernel's) is simply
	// not flattened; a malformed one is reported.
	ids := make([]uint64, len(dev.Bridges))
	var idErrs []error
	dir := filepath.Dir(resolved)
	for i := len(dev.Bridges) - 1; i >= 0; i-- {
		id, err := ReadID(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			idErrs = append(idErrs, err)
		}
		ids[i] = id
		dir = filepath.Dir(dir)
	}
	if len(idErrs) == 0 && len(ids) > 0 {
		if flat := FlattenBroadcom(dev.Bridges, ids); len(flat) != len(dev.Bridges) {
			dev.LevelBridges = flat
		}
	}
	return dev, errors.Join(append([]error{numaErr}, idErrs...)...)
}

// ReadID reads a PCI function's vendor, device, subsystem vendor and
// subsystem device, packed as NCCL packs them: vendor in the top 16 bits.
func ReadID(dir string) (uint64, error) {
	var id uint64
	for _, f := range []string{"vendor", "device", "subsystem_vendor", "subsystem_device"} {
		path := filepath.Join(dir, f)
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", path, err)
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(data)), "0x"), 16, 16)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a 16-bit hex id", path, strings.TrimSpace(string(data)))
		}
		id = id<<16 | v
	}
	return id, nil
}

// Broadcom PEX switch ids, as NCCL matches them (vendor, device and
// subsystem vendor, the subsystem device's low 12 bits free): Gen4
// PEX88000 and Gen5 PEX89000 in base mode.
const (
	bcmMask = 0xfffffffffffff000
	bcmGen4 = 0x1000c0101000a000
	bcmGen5 = 0x1000c03010000000
)

// IsBroadcomPEX reports whether id (as ReadID packs it) is a Broadcom PEX
// switch that presents itself as two levels.
func IsBroadcomPEX(id uint64) bool {
	return id&bcmMask == bcmGen4 || id&bcmMask == bcmGen5
}

// FlattenBroadcom removes the inner level of Broadcom PEX switches that
// present themselves as a switch of switches, as NCCL does: such a switch
// sustains full bandwidth between all its ports, and NCCL counts a GPU and a
// NIC under two of its sub-switches as PIX, not PXB. NCCL sees a switch at
// every second bridge above a device (an upstream port; the downstream port
// between is skipped); a sub-switch is one whose id equals that of the switch
// above it. Flattening drops the sub-switch's upstream port and the parent's
// downstream port above it, so the device hangs one port below the parent.
// ids[i] is Bridges[i]'s id.
func FlattenBroadcom(bridges []string, ids []uint64) []string {
	out := slices.Clone(bridges)
	outIDs := slices.Clone(ids)
	// Upstream ports sit at len-2, len-4, ... counted from the device.
	for i := len(out) - 2; i-2 >= 0; i -= 2 {
		if IsBroadcomPEX(outIDs[i]) && outIDs[i] == outIDs[i-2] {
			out = slices.Delete(out, i-1, i+1)
			outIDs = slices.Delete(outIDs, i-1, i+1)
		}
	}
	return out
}

var hostBridgePattern = regexp.MustCompile(`^pci[0-9a-f]{4}:[0-9a-f]{2}$`)

// parseDevicePath splits .../devices/pci0000:00/0000:00:01.0/0000:01:00.0
// into host bridge and bridges. The host bridge is the element above the
// chain of PCI addresses that ends in the device; it need not sit directly
// under devices/: a Hyper-V guest's (Azure ND) hangs under its VMBus device,
// devices/LNXSYSTM:00/.../VMBUS:01/<guid>/pci0001:00/0001:00:00.0.
func parseDevicePath(path, bdf string) (Device, error) {
	parts := strings.Split(filepath.ToSlash(path), "/")
	if len(parts) == 0 || parts[len(parts)-1] != bdf {
		return Device{}, fmt.Errorf("%s does not end in device %s", path, bdf)
	}
	host := len(parts) - 1
	for host > 0 && IsBDF(parts[host]) {
		host--
	}
	if !hostBridgePattern.MatchString(parts[host]) || !slices.Contains(parts[:host], "devices") {
		return Device{}, fmt.Errorf("%s is not under a devices/.../pciDDDD:BB host bridge (element %q above the PCI addresses)", path, parts[host])
	}
	chain := parts[host+1:]
	d := Device{BDF: bdf, HostBridge: parts[host], NUMANode: -1}
	if len(chain) > 1 {
		d.Bridges = append([]string(nil), chain[:len(chain)-1]...)
	}
	return d, nil
}

// ReadNUMANode reads a numa_node file; a missing file means -1 without error.
func ReadNUMANode(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("reading %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < -1 {
		return -1, fmt.Errorf("%s: %q is not a NUMA node number", path, strings.TrimSpace(string(data)))
	}
	return n, nil
}

// Level is the PCIe distance between a and b:
//   - PIX: they share a PCIe switch (the deepest bridge they share is at most
//     one bridge above each of them: a switch's upstream port above its
//     downstream ports, or one port above both);
//   - PXB: they share a bridge, but reaching it crosses more than one bridge
//     on at least one side (cascaded switches), still below the host bridge;
//   - PHB: they share only the host bridge (the root complex);
//   - NODE: different host bridges on the same NUMA node;
//   - SYS: different NUMA nodes, across the CPU interconnect.
func Level(a, b Device) v1alpha1.PCIeLevel {
	if a.HostBridge != b.HostBridge {
		if a.NUMANode == b.NUMANode {
			return v1alpha1.PCIeLevelNODE
		}
		return v1alpha1.PCIeLevelSYS
	}
	ab, bb := a.levelBridges(), b.levelBridges()
	common := commonPrefix(ab, bb)
	if common == 0 {
		return v1alpha1.PCIeLevelPHB
	}
	if len(ab)-common <= 1 && len(bb)-common <= 1 {
		return v1alpha1.PCIeLevelPIX
	}
	return v1alpha1.PCIeLevelPXB
}

// LevelRank orders levels nearest first: PIX is 0, SYS is 4.
func LevelRank(l v1alpha1.PCIeLevel) int {
	switch l {
	case v1alpha1.PCIeLevelPIX:
		return 0
	case v1alpha1.PCIeLevelPXB:
		return 1
	case v1alpha1.PCIeLevelPHB:
		return 2
	case v1alpha1.PCIeLevelNODE:
		return 3
	default:
		return 4
	}
}

// PathBridges returns the bridges traffic between a and b crosses: from a up
// to the deepest shared bridge and down to b, or every bridge of both when
// they share none.
func PathBridges(a, b Device) []string {
	common := 0
	if a.HostBridge == b.HostBridge {
		common = commonPrefix(a.Bridges, b.Bridges)
	}
	var out []string
	if common > 0 {
		out = append(out, a.Bridges[common-1])
	}
	out = append(out, a.Bridges[common:]...)
	out = append(out, b.Bridges[common:]...)
	return out
}

// TurnPorts returns the ports where the path between a and b turns: below
// their deepest shared bridge (or the shared root complex), the bridge on
// a's side and the one on b's side, "" for a side that hangs directly below
// it. Devices under different host bridges share no port.
func TurnPorts(a, b Device) (aPort, bPort string) {
	if a.HostBridge != b.HostBridge {
		return "", ""
	}
	common := commonPrefix(a.Bridges, b.Bridges)
	if common < len(a.Bridges) {
		aPort = a.Bridges[common]
	}
	if common < len(b.Bridges) {
		bPort = b.Bridges[common]
	}
	return aPort, bPort
}

func commonPrefix(a, b []string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
