package rdma

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ConnectX-8 Data Direct.
//
// On Grace Blackwell trays with ConnectX-8 NICs the NIC's main PCI function (the RDMA device, mlx5_core) sits in a PCI
// domain of its own, while a second PCI function of the same NIC, the Data
// Direct DMA function (vendor 0x15b3, device 0x2100, class 0x080100), hangs
// under the NIC's internal PCIe switch together with the GPU:
//
//	Grace root port -> CX8 switch upstream port -> downstream port -> Data Direct function
//	                                            -> downstream port -> switch -> downstream port -> GPU
//
// (linux-rdma rdma-core kernel-boot/rdma_topo, "DMA-based" topology). The
// kernel's mlx5_ib driver binds the Data Direct function and pairs it with
// its RDMA device through the VPD "VU" keyword and a firmware query; user
// space learns the pairing only from mlx5dv_get_data_direct_sysfs_path(), an
// ioctl on the RDMA device (rdma-core providers/mlx5). No sysfs attribute
// of the RDMA device names it. What sysfs does show, and what rdma_topo
// matches on, is the VPD: every PCI function of one NIC, the Data Direct
// function included, carries the same "V3" keyword (a UUID) in the
// read-only section of /sys/bus/pci/devices/<bdf>/vpd.
//
// So the agent reads, only when the node has Data Direct functions at all:
//   - /sys/bus/pci/devices/*/vendor and device, to find functions 15b3:2100;
//   - their vpd files and the vpd file of each RDMA device's PCI function,
//     to match the V3 keywords.
//
// The vpd files are readable by root only; an agent that cannot read them
// reports the file and publishes the NIC without its Data Direct function.
//
// NCCL (src/transport/net_ib/init.cc) exposes such a NIC with the Data
// Direct function's sysfs path by default (NCCL_IB_DATA_DIRECT=1), so its
// topology places the NIC where the Data Direct function is, and GPUDirect
// traffic flows between the GPU and that function.

// Data Direct function PCI ids (kernel drivers/infiniband/hw/mlx5/data_direct.c).
const (
	dataDirectVendor = "0x15b3"
	dataDirectDevice = "0x2100"
)

// VPD resource tags (PCI Local Bus specification, VPD).
const (
	vpdTagEnd      = 0x78 // small resource, end tag
	vpdTagLarge    = 0x80
	vpdTagReadOnly = 0x90 // large resource, VPD-R
)

// ParseVPDKeyword returns the value of keyword kw (such as "V3") in the
// read-only section of raw VPD, and whether it is there. Malformed VPD is an
// error; VPD without a read-only section or without the keyword is not.
func ParseVPDKeyword(vpd []byte, kw string) (string, bool, error) {
	for i := 0; i < len(vpd); {
		tag := vpd[i]
		if tag == vpdTagEnd {
			return "", false, nil
		}
		var start, n int
		if tag&vpdTagLarge != 0 {
			if i+3 > len(vpd) {
				return "", false, fmt.Errorf("VPD resource %#02x at offset %d is cut off before its length", tag, i)
			}
			start, n = i+3, int(vpd[i+1])|int(vpd[i+2])<<8
		} else {
			start, n = i+1, int(tag&0x07)
		}
		if start+n > len(vpd) {
			return "", false, fmt.Errorf("VPD resource %#02x at offset %d claims %d bytes, %d remain", tag, i, n, len(vpd)-start)
		}
		if tag == vpdTagReadOnly {
			data := vpd[start : start+n]
			for j := 0; j+3 <= len(data); {
				name, l := string(data[j:j+2]), int(data[j+2])
				if j+3+l > len(data) {
					return "", false, fmt.Errorf("VPD keyword %q at offset %d claims %d bytes, %d remain", name, start+j, l, len(data)-j-3)
				}
				if name == kw {
					return strings.TrimSpace(string(data[j+3 : j+3+l])), true, nil
				}
				j += 3 + l
			}
		}
		i = start + n
	}
	return "", false, nil
}

// readVPDV3 reads a PCI function's V3 keyword from its vpd file. A function
// without a vpd file, or whose VPD has no V3, gives "" and no error.
func readVPDV3(devDir string) (string, error) {
	path := filepath.Join(devDir, "vpd")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	v3, _, err := ParseVPDKeyword(data, "V3")
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return v3, nil
}

// dataDirectFunctions maps V3 to the Data Direct function carrying it, for
// every Data Direct function under root/bus/pci/devices. Two functions with
// one V3 are reported and left out: which of them serves the NIC cannot be
// told.
func dataDirectFunctions(root string) (map[string]string, error) {
	dir := filepath.Join(root, "bus", "pci", "devices")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	byV3 := map[string][]string{}
	var errs []error
	for _, e := range entries {
		devDir := filepath.Join(dir, e.Name())
		vendor, err := readTrimmed(filepath.Join(devDir, "vendor"))
		if err != nil || vendor != dataDirectVendor {
			continue
		}
		device, err := readTrimmed(filepath.Join(devDir, "device"))
		if err != nil || device != dataDirectDevice {
			continue
		}
		v3, err := readVPDV3(devDir)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("Data Direct function %s: %w", e.Name(), err))
		case v3 == "":
			errs = append(errs, fmt.Errorf("Data Direct function %s: %s has no V3 keyword to match it to its NIC", e.Name(), filepath.Join(devDir, "vpd")))
		default:
			byV3[v3] = append(byV3[v3], e.Name())
		}
	}
	out := map[string]string{}
	for v3, bdfs := range byV3 {
		if len(bdfs) > 1 {
			slices.Sort(bdfs)
			errs = append(errs, fmt.Errorf("Data Direct functions %s share VPD V3 %q; none is matched to a NIC", strings.Join(bdfs, ", "), v3))
			continue
		}
		out[v3] = bdfs[0]
	}
	return out, errors.Join(errs...)
}

// attachDataDirect sets each port's DataDirectBDF from the VPD V3 of its PCI
// function. It reads the NICs' VPD only when the node has a Data Direct
// function.
func attachDataDirect(root string, ports []Port) error {
	dd, err := dataDirectFunctions(root)
	if len(dd) == 0 {
		return err
	}
	errs := []error{err}
	v3Of := map[string]string{}
	for i := range ports {
		bdf := ports[i].PCIBusID
		v3, seen := v3Of[bdf]
		if !seen {
			var err error
			v3, err = readVPDV3(filepath.Join(root, "bus", "pci", "devices", bdf))
			if err != nil {
				errs = append(errs, fmt.Errorf("NIC %s: %w", ports[i].Name, err))
			}
			v3Of[bdf] = v3
		}
		if v3 != "" {
			ports[i].DataDirectBDF = dd[v3]
		}
	}
	return errors.Join(errs...)
}
