// Package pci reads the PCI tree from sysfs and computes how far apart two
// devices sit, the way NCCL and `nvidia-smi topo -m` name it.
package pci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	// NUMANode is -1 when the platform does not say.
	NUMANode int
}

// SysFS reads PCI devices under a sysfs root (normally /sys).
type SysFS struct {
	Root string
}

// DevicePath is the sysfs directory of a device, through its bus symlink.
func (s SysFS) DevicePath(bdf string) string {
	return filepath.Join(s.Root, "bus", "pci", "devices", bdf)
}

// Device resolves bdf's place in the tree. When only its NUMA node is
// unreadable, the returned Device is complete except for NUMANode (-1) and
// the error names the file.
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
	numa, err := ReadNUMANode(filepath.Join(resolved, "numa_node"))
	dev.NUMANode = numa
	return dev, err
}

// parseDevicePath splits .../devices/pci0000:00/0000:00:01.0/0000:01:00.0
// into host bridge and bridges.
func parseDevicePath(path, bdf string) (Device, error) {
	parts := strings.Split(filepath.ToSlash(path), "/")
	host := -1
	for i, p := range parts {
		if strings.HasPrefix(p, "pci") && i > 0 && parts[i-1] == "devices" {
			host = i
		}
	}
	if host < 0 {
		return Device{}, fmt.Errorf("%s is not under a devices/pciDDDD:BB host bridge", path)
	}
	chain := parts[host+1:]
	if len(chain) == 0 || chain[len(chain)-1] != bdf {
		return Device{}, fmt.Errorf("%s does not end in device %s", path, bdf)
	}
	for _, c := range chain {
		if !IsBDF(c) {
			return Device{}, fmt.Errorf("%s: path element %q is not a PCI address", path, c)
		}
	}
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
	common := commonPrefix(a.Bridges, b.Bridges)
	if common == 0 {
		return v1alpha1.PCIeLevelPHB
	}
	if len(a.Bridges)-common <= 1 && len(b.Bridges)-common <= 1 {
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

func commonPrefix(a, b []string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
