// Package nvmlgpu implements gpu.Library over NVIDIA's go-nvml (cgo, loading
// libnvidia-ml.so.1 at run time). Calls whose NVML symbol a driver may lack
// are made only after checking the symbol exists, as NVIDIA's go-nvlib does,
// so an old driver degrades to "unknown" instead of crashing the process.
package nvmlgpu

import (
	"errors"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
)

// Symbols of newer NVML releases, checked before use.
const (
	symNumaNodeID       = "nvmlDeviceGetNumaNodeId"
	symRemoteDeviceType = "nvmlDeviceGetNvLinkRemoteDeviceType"
	symFabricInfoV      = "nvmlDeviceGetGpuFabricInfoV"
	symFabricInfo       = "nvmlDeviceGetGpuFabricInfo"
)

// Library reads GPUs through NVML.
type Library struct {
	path string
	lib  nvml.Interface

	mu      sync.Mutex
	handles map[int]nvml.Device
}

var _ gpu.Library = (*Library)(nil)

// New returns a Library that loads NVML from path, or from the default
// libnvidia-ml.so.1 search when path is empty.
func New(path string) *Library {
	var opts []nvml.LibraryOption
	if path != "" {
		opts = append(opts, nvml.WithLibraryPath(path))
	}
	return &Library{path: path, lib: nvml.New(opts...), handles: map[int]nvml.Device{}}
}

func (l *Library) name() string {
	if l.path == "" {
		return "libnvidia-ml.so.1"
	}
	return l.path
}

// Init loads and initialises NVML.
func (l *Library) Init() error {
	ret := l.lib.Init()
	switch ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("loading %s: %w", l.name(), gpu.ErrLibraryNotFound)
	default:
		return fmt.Errorf("initialising NVML from %s: %w", l.name(), asError(ret))
	}
}

// Shutdown releases NVML.
func (l *Library) Shutdown() error {
	l.mu.Lock()
	clear(l.handles)
	l.mu.Unlock()
	if ret := l.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("shutting down NVML: %w", asError(ret))
	}
	return nil
}

// DeviceCount returns the number of GPUs NVML sees.
func (l *Library) DeviceCount() (int, error) {
	n, ret := l.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return 0, fmt.Errorf("counting GPUs: %w", asError(ret))
	}
	return n, nil
}

func (l *Library) hasSymbol(name string) bool {
	return l.lib.Extensions().LookupSymbol(name) == nil
}

func (l *Library) handle(index int) (nvml.Device, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d, ok := l.handles[index]; ok {
		return d, nil
	}
	d, ret := l.lib.DeviceGetHandleByIndex(index)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("GPU %d: getting handle: %w", index, asError(ret))
	}
	l.handles[index] = d
	return d, nil
}

// Device reads one GPU. UUID and PCI bus id are required; the rest degrade
// to warnings. NVML_ERROR_GPU_IS_LOST from any call loses the device.
func (l *Library) Device(index int) (gpu.DeviceInfo, error) {
	d, err := l.handle(index)
	if err != nil {
		return gpu.DeviceInfo{}, err
	}
	info := gpu.DeviceInfo{Index: index, NUMANode: -1}
	warn := func(what string, ret nvml.Return) error {
		if ret == nvml.ERROR_GPU_IS_LOST {
			return fmt.Errorf("GPU %d: reading %s: %w", index, what, gpu.ErrGPULost)
		}
		if ret != nvml.ERROR_NOT_SUPPORTED {
			info.Warnings = append(info.Warnings, fmt.Sprintf("reading %s: %v", what, asError(ret)))
		}
		return nil
	}

	uuid, ret := d.GetUUID()
	if ret != nvml.SUCCESS {
		if err := warn("UUID", ret); err != nil {
			return gpu.DeviceInfo{}, err
		}
		return gpu.DeviceInfo{}, fmt.Errorf("GPU %d: reading UUID: %w", index, asError(ret))
	}
	info.UUID = uuid
	pci, ret := d.GetPciInfo()
	if ret != nvml.SUCCESS {
		if err := warn("PCI info", ret); err != nil {
			return gpu.DeviceInfo{}, err
		}
		return gpu.DeviceInfo{}, fmt.Errorf("GPU %d (%s): reading PCI info: %w", index, uuid, asError(ret))
	}
	busID, err := gpu.NormalizePCIBusID(cString(pci.BusId[:]))
	if err != nil {
		return gpu.DeviceInfo{}, fmt.Errorf("GPU %d (%s): %w", index, uuid, err)
	}
	info.PCIBusID = busID

	if l.hasSymbol(symNumaNodeID) {
		if numa, ret := d.GetNumaNodeId(); ret == nvml.SUCCESS {
			info.NUMANode = numa
		} else if err := warn("NUMA node", ret); err != nil {
			return gpu.DeviceInfo{}, err
		}
	}
	if name, ret := d.GetName(); ret == nvml.SUCCESS {
		info.Model = name
	} else if err := warn("name", ret); err != nil {
		return gpu.DeviceInfo{}, err
	}
	if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
		info.MemoryMiB = int64(mem.Total >> 20)
	} else if err := warn("memory", ret); err != nil {
		return gpu.DeviceInfo{}, err
	}
	if current, _, ret := d.GetMigMode(); ret == nvml.SUCCESS {
		info.MIGEnabled = current == nvml.DEVICE_MIG_ENABLE
	} else if err := warn("MIG mode", ret); err != nil {
		return gpu.DeviceInfo{}, err
	}
	if err := l.readNVLinks(d, &info, warn); err != nil {
		return gpu.DeviceInfo{}, err
	}
	if err := l.readFabric(d, &info, warn); err != nil {
		return gpu.DeviceInfo{}, err
	}
	return info, nil
}

func (l *Library) readNVLinks(d nvml.Device, info *gpu.DeviceInfo, warn func(string, nvml.Return) error) error {
	remoteTypeKnown := l.hasSymbol(symRemoteDeviceType)
	for link := range v1alpha1.MaxNVLinks {
		state, ret := d.GetNvLinkState(link)
		switch ret {
		case nvml.SUCCESS:
		case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_INVALID_ARGUMENT:
			// No such link on this GPU.
			continue
		default:
			if err := warn(fmt.Sprintf("NVLink %d state", link), ret); err != nil {
				return err
			}
			continue
		}
		nl := gpu.NVLink{Link: link, Active: state == nvml.FEATURE_ENABLED, RemoteType: gpu.RemoteUnknown}
		if nl.Active {
			// Left as NVML gives it: gpu.Discover normalizes it, and knows
			// the all-ones id of an NVSwitch link.
			if pci, ret := d.GetNvLinkRemotePciInfo(link); ret == nvml.SUCCESS {
				nl.RemotePCIBusID = cString(pci.BusId[:])
			} else if err := warn(fmt.Sprintf("NVLink %d remote PCI info", link), ret); err != nil {
				return err
			}
			if remoteTypeKnown {
				if t, ret := d.GetNvLinkRemoteDeviceType(link); ret == nvml.SUCCESS {
					switch t {
					case nvml.NVLINK_DEVICE_TYPE_GPU:
						nl.RemoteType = gpu.RemoteGPU
					case nvml.NVLINK_DEVICE_TYPE_SWITCH:
						nl.RemoteType = gpu.RemoteNVSwitch
					}
				} else if err := warn(fmt.Sprintf("NVLink %d remote device type", link), ret); err != nil {
					return err
				}
			}
		}
		info.NVLinks = append(info.NVLinks, nl)
	}
	return nil
}

func (l *Library) readFabric(d nvml.Device, info *gpu.DeviceInfo, warn func(string, nvml.Return) error) error {
	var (
		uuid          [16]uint8
		status, cliqe uint32
		state         uint8
		ret           nvml.Return
	)
	switch {
	case l.hasSymbol(symFabricInfoV):
		var v2 nvml.GpuFabricInfo_v2
		v2, ret = d.GetGpuFabricInfoV().V2()
		uuid, status, cliqe, state = v2.ClusterUuid, v2.Status, v2.CliqueId, v2.State
	case l.hasSymbol(symFabricInfo):
		var v1 nvml.GpuFabricInfo
		v1, ret = d.GetGpuFabricInfo()
		uuid, status, cliqe, state = v1.ClusterUuid, v1.Status, v1.CliqueId, v1.State
	default:
		return nil
	}
	if ret != nvml.SUCCESS {
		return warn("GPU fabric info", ret)
	}
	info.Fabric = fabricFrom(uuid, status, cliqe, state)
	return nil
}

// fabricFrom converts NVML's fabric info; nil when the GPU has no fabric.
func fabricFrom(uuid [16]uint8, status, clique uint32, state uint8) *gpu.Fabric {
	var f gpu.Fabric
	switch state {
	case nvml.GPU_FABRIC_STATE_NOT_STARTED:
		f.State = gpu.FabricNotStarted
	case nvml.GPU_FABRIC_STATE_IN_PROGRESS:
		f.State = gpu.FabricInProgress
	case nvml.GPU_FABRIC_STATE_COMPLETED:
		f.State = gpu.FabricCompleted
	default:
		return nil
	}
	if uuid != [16]uint8{} {
		f.ClusterUUID = formatUUID(uuid)
	}
	f.CliqueID = clique
	if r := nvml.Return(status); r == nvml.SUCCESS {
		f.Status = "Success"
	} else {
		f.Status = asError(r).Error()
	}
	return &f
}

func formatUUID(b [16]uint8) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NVLinkP2P reports NVML's NVLink P2P status between two GPUs.
func (l *Library) NVLinkP2P(a, b int) (bool, error) {
	da, err := l.handle(a)
	if err != nil {
		return false, err
	}
	db, err := l.handle(b)
	if err != nil {
		return false, err
	}
	status, ret := da.GetP2PStatus(db, nvml.P2P_CAPS_INDEX_NVLINK)
	switch ret {
	case nvml.SUCCESS:
		return status == nvml.P2P_STATUS_OK, nil
	case nvml.ERROR_NOT_SUPPORTED:
		return false, nil
	default:
		return false, fmt.Errorf("NVLink P2P status between GPU %d and %d: %w", a, b, asError(ret))
	}
}

// asError turns an NVML return code into an error, wrapping gpu.ErrGPULost
// and gpu.ErrLibraryNotFound for the codes that mean those.
func asError(ret nvml.Return) error {
	switch ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_GPU_IS_LOST:
		return fmt.Errorf("%w (%s)", gpu.ErrGPULost, returnName(ret))
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("%w (%s)", gpu.ErrLibraryNotFound, returnName(ret))
	default:
		return errors.New(returnName(ret))
	}
}

func returnName(ret nvml.Return) string {
	return fmt.Sprintf("NVML error %d: %s", int32(ret), ret.Error())
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
