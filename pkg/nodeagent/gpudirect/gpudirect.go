// Package gpudirect checks whether GPUDirect RDMA can work on the node, and
// optionally fixes what the agent may fix (load nvidia-peermem, clear ACS
// redirection on the bridges between GPUs and their NICs).
package gpudirect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"k8s.io/klog/v2"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
)

// Check names, one entry each in the NodeTopology.
const (
	CheckDevices       = "devices"
	CheckMemoryAccess  = "gpu-memory-access"
	CheckPCIePath      = "pcie-path"
	CheckACS           = "acs"
	CheckIOMMU         = "iommu"
	CheckNICPort       = "nic-port"
	dmaBufMinKernelMaj = 5
	dmaBufMinKernelMin = 12
)

// Pair is a GPU and the NIC it would send through.
type Pair struct {
	GPU      int
	GPUBDF   string
	NIC      string
	NICBDF   string
	NICState v1alpha1.PortState
	Level    v1alpha1.PCIeLevel
	// Bridges are the PCI bridges between the two.
	Bridges []string
}

// Input is what the checks look at.
type Input struct {
	GPUCount int
	NICCount int
	// Pairs has one entry per GPU that has a NIC.
	Pairs []Pair
}

// Result is the outcome of all checks.
type Result struct {
	Ready  bool
	Mode   v1alpha1.GPUDirectMode
	Checks []v1alpha1.GPUDirectCheck
}

// Failed returns the checks that did not pass.
func (r Result) Failed() []v1alpha1.GPUDirectCheck {
	var out []v1alpha1.GPUDirectCheck
	for _, c := range r.Checks {
		if c.Result != v1alpha1.CheckPass {
			out = append(out, c)
		}
	}
	return out
}

// Checker runs the checks against sysfs and procfs.
type Checker struct {
	SysRoot  string
	ProcRoot string
	Config   pci.ConfigSpace
	// MaxLevel is the farthest GPU-NIC PCIe level at which GPUDirect RDMA
	// counts as usable; NCCL's default (NCCL_NET_GDR_LEVEL) is PXB.
	MaxLevel v1alpha1.PCIeLevel
}

// Check runs every check. It never fails: what it cannot read becomes an
// Unknown result with the reason.
func (c Checker) Check(ctx context.Context, in Input) Result {
	checks := []v1alpha1.GPUDirectCheck{c.devices(in)}
	mem, mode := c.memoryAccess()
	checks = append(checks, mem, c.pciePath(in), c.acs(in), c.iommu(in), c.nicPort(in))
	r := Result{Ready: true, Mode: mode, Checks: checks}
	for _, ch := range checks {
		if ch.Result == v1alpha1.CheckFail || (ch.Result == v1alpha1.CheckUnknown && !advisory(ch)) {
			r.Ready = false
		}
	}
	klog.FromContext(ctx).V(3).Info("GPUDirect RDMA checks", "ready", r.Ready, "mode", mode)
	return r
}

// advisory says whether an Unknown check may leave the node ready. Only one
// may: without CAP_SYS_ADMIN the kernel shows an unprivileged agent just the
// first 64 bytes of a bridge's config space, and ACS lives beyond them. The
// default agent is unprivileged, and a node it cannot see ACS on would
// otherwise never run an RDMA pod; the check stays Unknown with its reason,
// and the read-pci-config overlay makes the agent able to enforce it.
func advisory(ch v1alpha1.GPUDirectCheck) bool {
	return ch.Name == CheckACS && ch.Reason == reasonConfigSpaceUnreadable
}

// reasonConfigSpaceUnreadable: the ACS capability could not be read.
const reasonConfigSpaceUnreadable = "ConfigSpaceUnreadable"

func pass(name, reason, msg string) v1alpha1.GPUDirectCheck {
	return v1alpha1.GPUDirectCheck{Name: name, Result: v1alpha1.CheckPass, Reason: reason, Message: truncate(msg)}
}

func fail(name, reason, msg string) v1alpha1.GPUDirectCheck {
	return v1alpha1.GPUDirectCheck{Name: name, Result: v1alpha1.CheckFail, Reason: reason, Message: truncate(msg)}
}

func unknown(name, reason, msg string) v1alpha1.GPUDirectCheck {
	return v1alpha1.GPUDirectCheck{Name: name, Result: v1alpha1.CheckUnknown, Reason: reason, Message: truncate(msg)}
}

func truncate(s string) string {
	if len(s) <= 1024 {
		return s
	}
	return s[:1021] + "..."
}

func (c Checker) devices(in Input) v1alpha1.GPUDirectCheck {
	switch {
	case in.GPUCount == 0:
		return fail(CheckDevices, "NoGPUs", "no GPU was discovered")
	case in.NICCount == 0:
		return fail(CheckDevices, "NoRDMANICs", "no RDMA NIC was discovered")
	}
	return pass(CheckDevices, "GPUsAndNICsFound", fmt.Sprintf("%d GPUs and %d RDMA NIC ports", in.GPUCount, in.NICCount))
}

// DMABufState is what decides whether the dma-buf path is available.
type DMABufState struct {
	Kernel           string
	KernelOK         bool
	DriverVersion    string
	OpenKernelModule bool
	PeerMemLoaded    bool
}

// ReadDMABufState reads the kernel release, the NVIDIA kernel module flavour
// and whether nvidia_peermem is loaded. Unreadable files are joined into the
// error; the state holds what was read.
func (c Checker) ReadDMABufState() (DMABufState, error) {
	var (
		st   DMABufState
		errs []error
	)
	osrelease := filepath.Join(c.ProcRoot, "sys", "kernel", "osrelease")
	if data, err := os.ReadFile(osrelease); err != nil {
		errs = append(errs, fmt.Errorf("reading %s: %w", osrelease, err))
	} else {
		st.Kernel = strings.TrimSpace(string(data))
		maj, minor, err := ParseKernelRelease(st.Kernel)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", osrelease, err))
		} else {
			st.KernelOK = maj > dmaBufMinKernelMaj || (maj == dmaBufMinKernelMaj && minor >= dmaBufMinKernelMin)
		}
	}
	// /proc/driver/nvidia/version says "Open Kernel Module" for the open
	// flavour; without procfs, the module's taint tells: the proprietary
	// module taints the kernel with P, the open one (Dual MIT/GPL) does not.
	procVersion := filepath.Join(c.ProcRoot, "driver", "nvidia", "version")
	modVersion := filepath.Join(c.SysRoot, "module", "nvidia", "version")
	if data, err := os.ReadFile(procVersion); err == nil {
		st.OpenKernelModule = strings.Contains(string(data), "Open Kernel Module")
	}
	if data, err := os.ReadFile(modVersion); err == nil {
		st.DriverVersion = strings.TrimSpace(string(data))
		if !st.OpenKernelModule {
			taint := filepath.Join(c.SysRoot, "module", "nvidia", "taint")
			if t, err := os.ReadFile(taint); err == nil {
				st.OpenKernelModule = !strings.Contains(string(t), "P")
			}
		}
	}
	if _, err := os.Stat(filepath.Join(c.SysRoot, "module", "nvidia_peermem")); err == nil {
		st.PeerMemLoaded = true
	}
	return st, errors.Join(errs...)
}

// ParseKernelRelease returns the major and minor of "5.15.0-105-generic".
func ParseKernelRelease(s string) (int, int, error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("kernel release %q is not major.minor...", s)
	}
	maj, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: major %q is not a number", s, parts[0])
	}
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	minor, err := strconv.Atoi(minStr)
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: minor %q is not a number", s, parts[1])
	}
	return maj, minor, nil
}

func (c Checker) memoryAccess() (v1alpha1.GPUDirectCheck, v1alpha1.GPUDirectMode) {
	st, err := c.ReadDMABufState()
	switch {
	case st.KernelOK && st.OpenKernelModule:
		return pass(CheckMemoryAccess, "DMABuf", fmt.Sprintf("kernel %s supports dma-buf and the NVIDIA open kernel module %s is loaded", st.Kernel, st.DriverVersion)), v1alpha1.GPUDirectDMABuf
	case st.PeerMemLoaded:
		return pass(CheckMemoryAccess, "PeerMem", "nvidia_peermem is loaded"), v1alpha1.GPUDirectPeerMem
	}
	var why []string
	switch {
	case st.Kernel == "":
		why = append(why, "kernel release unknown")
	case !st.KernelOK:
		why = append(why, fmt.Sprintf("kernel %s is older than 5.12 (no dma-buf)", st.Kernel))
	}
	switch {
	case st.DriverVersion == "" && !st.OpenKernelModule:
		why = append(why, "the NVIDIA kernel module is not loaded")
	case !st.OpenKernelModule:
		why = append(why, "the NVIDIA kernel module is the proprietary flavour (dma-buf needs the open one)")
	}
	why = append(why, "nvidia_peermem is not loaded")
	if err != nil {
		return unknown(CheckMemoryAccess, "Unreadable", err.Error()+"; "+strings.Join(why, "; ")), v1alpha1.GPUDirectNone
	}
	return fail(CheckMemoryAccess, "NoDMABufOrPeerMem", strings.Join(why, "; ")), v1alpha1.GPUDirectNone
}

func (c Checker) maxLevel() v1alpha1.PCIeLevel {
	if c.MaxLevel == "" {
		return v1alpha1.PCIeLevelPXB
	}
	return c.MaxLevel
}

func (c Checker) pciePath(in Input) v1alpha1.GPUDirectCheck {
	if len(in.Pairs) == 0 {
		return unknown(CheckPCIePath, "NoGPUNICPairs", "no GPU has a NIC to check")
	}
	var far []string
	for _, p := range in.Pairs {
		if pci.LevelRank(p.Level) > pci.LevelRank(c.maxLevel()) {
			far = append(far, fmt.Sprintf("GPU %d to %s is %s", p.GPU, p.NIC, p.Level))
		}
	}
	if len(far) > 0 {
		return fail(CheckPCIePath, "NICAcrossHostBridge", fmt.Sprintf("nearest NIC farther than %s: %s", c.maxLevel(), strings.Join(far, ", ")))
	}
	return pass(CheckPCIePath, "NICNearGPU", fmt.Sprintf("every GPU has a NIC within %s", c.maxLevel()))
}

// PairBridges returns the distinct bridges on every pair's path, sorted.
func PairBridges(in Input) []string {
	var out []string
	for _, p := range in.Pairs {
		out = append(out, p.Bridges...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (c Checker) acs(in Input) v1alpha1.GPUDirectCheck {
	bridges := PairBridges(in)
	if len(in.Pairs) == 0 {
		return unknown(CheckACS, "NoGPUNICPairs", "no GPU has a NIC to check")
	}
	var redirecting, unreadable []string
	for _, b := range bridges {
		acs, err := pci.ReadACS(c.Config, b)
		if err != nil {
			unreadable = append(unreadable, err.Error())
			continue
		}
		if acs.Present && acs.Redirects() {
			redirecting = append(redirecting, fmt.Sprintf("%s (ACS control %#04x)", b, acs.Control))
		}
	}
	switch {
	case len(redirecting) > 0:
		return fail(CheckACS, "ACSRedirectEnabled", "P2P request/completion redirect is enabled on bridges "+strings.Join(redirecting, ", "))
	case len(unreadable) > 0:
		return unknown(CheckACS, reasonConfigSpaceUnreadable, strings.Join(unreadable, "; "))
	}
	return pass(CheckACS, "NoACSRedirect", fmt.Sprintf("no P2P redirect on the %d bridges between GPUs and NICs", len(bridges)))
}

func (c Checker) iommu(in Input) v1alpha1.GPUDirectCheck {
	iommuDir := filepath.Join(c.SysRoot, "class", "iommu")
	entries, err := os.ReadDir(iommuDir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		return pass(CheckIOMMU, "IOMMUDisabled", "no IOMMU is enabled")
	}
	if err != nil {
		return unknown(CheckIOMMU, "Unreadable", fmt.Sprintf("listing %s: %v", iommuDir, err))
	}
	var devs []string
	for _, p := range in.Pairs {
		devs = append(devs, p.GPUBDF, p.NICBDF)
	}
	slices.Sort(devs)
	devs = slices.Compact(devs)
	sys := pci.SysFS{Root: c.SysRoot}
	var translated, unreadable []string
	for _, d := range devs {
		group := filepath.Join(sys.DevicePath(d), "iommu_group")
		typeFile := filepath.Join(group, "type")
		data, err := os.ReadFile(typeFile)
		if err != nil {
			unreadable = append(unreadable, fmt.Sprintf("reading %s: %v", typeFile, err))
			continue
		}
		switch t := strings.TrimSpace(string(data)); t {
		case "identity":
		case "DMA", "DMA-FQ":
			translated = append(translated, fmt.Sprintf("%s (%s)", d, t))
		default:
			unreadable = append(unreadable, fmt.Sprintf("%s: unknown IOMMU domain type %q", typeFile, t))
		}
	}
	switch {
	case len(translated) > 0:
		return fail(CheckIOMMU, "IOMMUTranslation", "IOMMU translates DMA for "+strings.Join(translated, ", ")+"; GPUDirect RDMA needs iommu=pt or the IOMMU off")
	case len(unreadable) > 0:
		return unknown(CheckIOMMU, "Unreadable", strings.Join(unreadable, "; "))
	}
	return pass(CheckIOMMU, "IOMMUPassthrough", "the IOMMU is in passthrough (identity) mode for GPUs and NICs")
}

func (c Checker) nicPort(in Input) v1alpha1.GPUDirectCheck {
	if len(in.Pairs) == 0 {
		return unknown(CheckNICPort, "NoGPUNICPairs", "no GPU has a NIC to check")
	}
	var down []string
	seen := map[string]bool{}
	for _, p := range in.Pairs {
		if seen[p.NIC] {
			continue
		}
		seen[p.NIC] = true
		if p.NICState != v1alpha1.PortActive {
			down = append(down, fmt.Sprintf("%s is %s", p.NIC, p.NICState))
		}
	}
	slices.Sort(down)
	if len(down) > 0 {
		return fail(CheckNICPort, "NICPortNotActive", strings.Join(down, ", "))
	}
	return pass(CheckNICPort, "NICPortsActive", fmt.Sprintf("all %d NICs serving GPUs are Active", len(seen)))
}
