package pci

import (
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// TopologyFile is an NCCL topology file (NCCL_TOPO_FILE), which a cloud
// ships where the guest cannot see the PCIe switches: an Azure ND VM puts
// every GPU and NIC on a host bridge of its own under Hyper-V's VMBus, and
// /opt/microsoft/ndv5-topo.xml says which GPU and NIC share a switch. Levels
// between devices it lists are computed from its tree, as NCCL does.
type TopologyFile struct {
	Path    string
	devices map[string]Device
}

type xmlNode struct {
	XMLName  xml.Name
	BusID    string    `xml:"busid,attr"`
	NUMAID   string    `xml:"numaid,attr"`
	Children []xmlNode `xml:",any"`
}

// LoadTopologyFile reads an NCCL topology file. Errors name the file and
// the element.
func LoadTopologyFile(path string) (*TopologyFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading NCCL topology file %s: %w", path, err)
	}
	var root xmlNode
	if err := xml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("NCCL topology file %s: %w", path, err)
	}
	if root.XMLName.Local != "system" {
		return nil, fmt.Errorf("NCCL topology file %s: root element is <%s>, want <system>", path, root.XMLName.Local)
	}
	t := &TopologyFile{Path: path, devices: map[string]Device{}}
	var errs []error
	for i, cpu := range root.Children {
		if cpu.XMLName.Local != "cpu" {
			continue
		}
		numa, err := strconv.Atoi(cpu.NUMAID)
		if err != nil || numa < 0 {
			errs = append(errs, fmt.Errorf("NCCL topology file %s: <cpu> %d: numaid %q is not a NUMA node", path, i, cpu.NUMAID))
			continue
		}
		t.walk(cpu.Children, fmt.Sprintf("cpu%d", numa), numa, nil, &errs)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(t.devices) == 0 {
		return nil, fmt.Errorf("NCCL topology file %s lists no PCI device under a <cpu>", path)
	}
	return t, nil
}

func (t *TopologyFile) walk(nodes []xmlNode, host string, numa int, above []string, errs *[]error) {
	for _, n := range nodes {
		if n.XMLName.Local != "pci" {
			continue
		}
		bdf := strings.ToLower(strings.TrimSpace(n.BusID))
		if !IsBDF(bdf) {
			*errs = append(*errs, fmt.Errorf("NCCL topology file %s: <pci busid=%q> is not a PCI address", t.Path, n.BusID))
			continue
		}
		if _, dup := t.devices[bdf]; dup {
			*errs = append(*errs, fmt.Errorf("NCCL topology file %s: <pci busid=%q> listed twice", t.Path, n.BusID))
			continue
		}
		bridges := append([]string{}, above...)
		t.devices[bdf] = Device{BDF: bdf, HostBridge: host, Bridges: bridges, LevelBridges: bridges, NUMANode: numa}
		t.walk(n.Children, host, numa, append(bridges, bdf), errs)
	}
}

// Device returns the device as the file places it: its switches as bridges,
// and its CPU as host bridge, so that Level says PIX for a GPU and a NIC
// under one switch and PHB (through the CPU, as NCCL names it) for two
// devices of one CPU under no common switch.
func (t *TopologyFile) Device(bdf string) (Device, bool) {
	if t == nil {
		return Device{}, false
	}
	d, ok := t.devices[bdf]
	return d, ok
}
