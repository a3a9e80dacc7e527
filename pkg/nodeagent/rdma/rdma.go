// Package rdma discovers RDMA NIC ports from sysfs (class/infiniband).
package rdma

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
)

// Port is one RDMA device port.
type Port struct {
	// Name identifies the port on the node: the device name (mlx5_0) for a
	// single-port device, device/port otherwise.
	Name      string
	Device    string
	Port      int
	PCIBusID  string
	NetDev    string
	LinkLayer v1alpha1.LinkLayer
	State     v1alpha1.PortState
	// PhysState is the physical link state, such as LinkUp or Disabled.
	PhysState string
	RateGbps  int
	NUMANode  int
	// NodeGUID is the device's node GUID as sysfs prints it (b8ce:f603:00a1:b2c4).
	NodeGUID string
	// Driver is the PCI driver bound to the device (mlx5_core, efa), or ""
	// when sysfs does not say.
	Driver string
	// DataDirectBDF is the PCI address of the NIC's Data Direct DMA
	// function (ConnectX-8 on Grace trays), through which its DMA reaches
	// GPU memory; "" when the NIC has none (see datadirect.go).
	DataDirectBDF string
}

// DriverEFA is AWS's Elastic Fabric Adapter driver. Its ports report no
// link layer (sysfs reads "Unknown"): EFA is neither InfiniBand nor RoCE.
const DriverEFA = "efa"

// Discover lists every RDMA port under root/class/infiniband that sits on a
// PCI device (software devices such as rxe are skipped), each with its Data
// Direct function when it has one. The error joins one
// error per unreadable or malformed file, each naming it; ports are returned
// with what could be read, and a port whose device cannot be placed on the
// PCI bus is left out.
func Discover(root string) ([]Port, error) {
	classDir := filepath.Join(root, "class", "infiniband")
	entries, err := os.ReadDir(classDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", classDir, err)
	}
	var (
		ports []Port
		errs  []error
	)
	for _, e := range entries {
		dev := e.Name()
		devDir := filepath.Join(classDir, dev)
		pciDir, err := filepath.EvalSymlinks(filepath.Join(devDir, "device"))
		if errors.Is(err, os.ErrNotExist) {
			continue // not a PCI device
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resolving %s: %w", filepath.Join(devDir, "device"), err))
			continue
		}
		bdf := filepath.Base(pciDir)
		if !pci.IsBDF(bdf) {
			continue
		}
		devPorts, err := readDevice(devDir, dev, bdf)
		if err != nil {
			errs = append(errs, err)
		}
		ports = append(ports, devPorts...)
	}
	slices.SortFunc(ports, func(a, b Port) int { return strings.Compare(a.Name, b.Name) })
	if err := attachDataDirect(root, ports); err != nil {
		errs = append(errs, err)
	}
	return ports, errors.Join(errs...)
}

func readDevice(devDir, dev, bdf string) ([]Port, error) {
	var errs []error
	numa, err := pci.ReadNUMANode(filepath.Join(devDir, "device", "numa_node"))
	if err != nil {
		errs = append(errs, err)
	}
	guid, err := readTrimmed(filepath.Join(devDir, "node_guid"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	driver := ""
	if target, err := os.Readlink(filepath.Join(devDir, "device", "driver")); err == nil {
		driver = filepath.Base(target)
	}
	netdevs, err := netDevs(filepath.Join(devDir, "device", "net"))
	if err != nil {
		errs = append(errs, err)
	}
	portsDir := filepath.Join(devDir, "ports")
	entries, err := os.ReadDir(portsDir)
	if err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("listing %s: %w", portsDir, err))...)
	}
	var nums []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s: port directory %q is not a port number", portsDir, e.Name()))
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	var ports []Port
	for _, n := range nums {
		p := Port{Name: dev, Device: dev, Port: n, PCIBusID: bdf, NUMANode: numa, NodeGUID: guid, State: v1alpha1.PortUnknown, Driver: driver}
		if len(nums) > 1 {
			p.Name = fmt.Sprintf("%s/%d", dev, n)
		}
		p.NetDev = netdevs[n]
		if p.NetDev == "" && len(nums) == 1 && len(netdevs) == 1 {
			for _, v := range netdevs {
				p.NetDev = v
			}
		}
		if err := readPort(filepath.Join(portsDir, strconv.Itoa(n)), &p); err != nil {
			errs = append(errs, err)
		}
		ports = append(ports, p)
	}
	return ports, errors.Join(errs...)
}

func readPort(dir string, p *Port) error {
	var errs []error
	if s, err := readTrimmed(filepath.Join(dir, "state")); err != nil {
		errs = append(errs, err)
	} else if st, err := ParseState(s); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(dir, "state"), err))
	} else {
		p.State = st
	}
	if s, err := readTrimmed(filepath.Join(dir, "phys_state")); err != nil {
		errs = append(errs, err)
	} else {
		_, name, _ := strings.Cut(s, ":")
		p.PhysState = strings.TrimSpace(name)
	}
	if s, err := readTrimmed(filepath.Join(dir, "rate")); err != nil {
		errs = append(errs, err)
	} else if r, err := ParseRate(s); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(dir, "rate"), err))
	} else {
		p.RateGbps = r
	}
	if s, err := readTrimmed(filepath.Join(dir, "link_layer")); err != nil {
		errs = append(errs, err)
	} else {
		switch s {
		case "InfiniBand":
			p.LinkLayer = v1alpha1.LinkLayerInfiniBand
		case "Ethernet":
			p.LinkLayer = v1alpha1.LinkLayerRoCE
		case "Unknown":
			// The kernel's word for a link layer the driver leaves
			// unspecified, as the EFA driver does.
			if p.Driver != DriverEFA {
				errs = append(errs, fmt.Errorf("%s: link layer %q on a device whose driver is %q, not %s", filepath.Join(dir, "link_layer"), s, p.Driver, DriverEFA))
				break
			}
			p.LinkLayer = v1alpha1.LinkLayerEFA
		default:
			errs = append(errs, fmt.Errorf("%s: unknown link layer %q", filepath.Join(dir, "link_layer"), s))
		}
	}
	return errors.Join(errs...)
}

// ParseState parses a port state file such as "4: ACTIVE".
func ParseState(s string) (v1alpha1.PortState, error) {
	num, name, ok := strings.Cut(s, ":")
	if !ok {
		return v1alpha1.PortUnknown, fmt.Errorf("port state %q is not \"<n>: <NAME>\"", s)
	}
	switch strings.TrimSpace(num) + ":" + strings.TrimSpace(name) {
	case "1:DOWN":
		return v1alpha1.PortDown, nil
	case "2:INIT":
		return v1alpha1.PortInit, nil
	case "3:ARMED":
		return v1alpha1.PortArmed, nil
	case "4:ACTIVE":
		return v1alpha1.PortActive, nil
	case "5:ACTIVE_DEFER":
		return v1alpha1.PortActiveDefer, nil
	}
	return v1alpha1.PortUnknown, fmt.Errorf("unknown port state %q", s)
}

// ParseRate parses a port rate file such as "400 Gb/sec (4X NDR)" into Gb/s,
// rounded to the nearest whole number.
func ParseRate(s string) (int, error) {
	fields := strings.Fields(s)
	if len(fields) < 2 || fields[1] != "Gb/sec" {
		return 0, fmt.Errorf("rate %q is not \"<n> Gb/sec ...\"", s)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || v < 0 || v > 100000 || math.IsNaN(v) {
		return 0, fmt.Errorf("rate %q: %q is not a rate in Gb/s", s, fields[0])
	}
	return int(math.Round(v)), nil
}

// netDevs maps port number to netdev from device/net/<if>/dev_port (0-based).
func netDevs(dir string) (map[int]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	out := map[int]string{}
	var errs []error
	for _, e := range entries {
		port := 1
		devPort := filepath.Join(dir, e.Name(), "dev_port")
		if s, err := readTrimmed(devPort); err == nil {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a port index", devPort, s))
				continue
			}
			port = n + 1
		} else if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if _, dup := out[port]; !dup {
			out[port] = e.Name()
		}
	}
	return out, errors.Join(errs...)
}

func readTrimmed(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return strings.TrimSpace(string(data)), nil
}
