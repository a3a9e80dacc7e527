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
	// DMABDF is the PCI function whose DMA reaches the GPU's memory: the
	// NIC's Data Direct function when DataDirect, else NICBDF. Level,
	// Bridges and the IOMMU and ATS checks are about this function.
	DMABDF     string
	DataDirect bool
	Level      v1alpha1.PCIeLevel
	// Bridges are the PCI bridges between the GPU and DMABDF.
	Bridges []string
	// GPUPort and DMAPort are, when the two share a switch or root
	// complex, its ports the path enters from the GPU's side and from the
	// DMA function's side: where ACS P2P redirect acts on their traffic.
	GPUPort, DMAPort string
}

// dmaBDF is the function the pair's DMA comes from (NICBDF when unset).
func (p Pair) dmaBDF() string {
	if p.DMABDF != "" {
		return p.DMABDF
	}
	return p.NICBDF
}

// Input is what the checks look at.
type Input struct {
	GPUCount int
	NICCount int
	// GPUs are the indexes of the GPUs to judge one by one, those without
	// a NIC included; when empty, the GPUs of Pairs.
	GPUs []int
	// Pairs has one entry per GPU and each of its NICs.
	Pairs []Pair
}

// Result is the outcome of all checks.
type Result struct {
	Ready  bool
	Mode   v1alpha1.GPUDirectMode
	Checks []v1alpha1.GPUDirectCheck
	// GPUs is each GPU's readiness through its own NICs, by GPU index.
	GPUs []v1alpha1.GPUDirectGPU
}

// perGPUChecks are the checks judged on each GPU's own NICs; the others
// are node-wide and count for every GPU.
var perGPUChecks = map[string]bool{CheckPCIePath: true, CheckACS: true, CheckNICPort: true}

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
	// ACSUnknown says what an ACS state the agent cannot read does to
	// readiness; "" is ACSUnknownAuto.
	ACSUnknown ACSUnknownPolicy
}

// ACSUnknownPolicy is how an unreadable ACS state counts.
type ACSUnknownPolicy string

const (
	// ACSUnknownAuto, the default: unreadable ACS leaves the node ready
	// only when no IOMMU is enabled. Linux turns on ACS redirect on every
	// bridge that has it whenever it detects an IOMMU, even in passthrough
	// (iommu=pt), so with an IOMMU an unread ACS is most likely redirecting.
	ACSUnknownAuto ACSUnknownPolicy = "auto"
	// ACSUnknownStrict: unreadable ACS makes the node not ready.
	ACSUnknownStrict ACSUnknownPolicy = "strict"
	// ACSUnknownLenient: unreadable ACS never makes the node unready.
	ACSUnknownLenient ACSUnknownPolicy = "lenient"
)

// ParseACSUnknownPolicy checks a policy name ("" is auto).
func ParseACSUnknownPolicy(s string) (ACSUnknownPolicy, error) {
	switch p := ACSUnknownPolicy(s); p {
	case "", ACSUnknownAuto:
		return ACSUnknownAuto, nil
	case ACSUnknownStrict, ACSUnknownLenient:
		return p, nil
	}
	return "", fmt.Errorf("ACS policy %q is not one of auto, strict, lenient", s)
}

// Check runs every check. It never fails: what it cannot read becomes an
// Unknown result with the reason.
func (c Checker) Check(ctx context.Context, in Input) Result {
	checks := []v1alpha1.GPUDirectCheck{c.devices(in)}
	mem, mode := c.memoryAccess(in)
	iommu, iommuOn := c.iommu(in)
	checks = append(checks, mem, c.pciePath(in), c.acs(in, iommuOn), iommu, c.nicPort(in))
	r := Result{Ready: true, Mode: mode, Checks: checks}
	var nodeBlocking []string
	for _, ch := range checks {
		if c.blocks(ch, iommuOn) {
			r.Ready = false
			if !perGPUChecks[ch.Name] {
				nodeBlocking = append(nodeBlocking, ch.Name)
			}
		}
	}
	r.GPUs = c.perGPU(in, iommuOn, nodeBlocking)
	klog.FromContext(ctx).V(3).Info("GPUDirect RDMA checks", "ready", r.Ready, "mode", mode)
	return r
}

// blocks says whether a check's result keeps readiness from being true.
func (c Checker) blocks(ch v1alpha1.GPUDirectCheck, iommuOn bool) bool {
	return ch.Result == v1alpha1.CheckFail || (ch.Result == v1alpha1.CheckUnknown && !c.advisory(ch, iommuOn))
}

// perGPU judges each GPU on its own NICs: the pcie-path, acs and nic-port
// checks run on that GPU's pairs alone, and the node-wide checks that block
// the node (nodeBlocking) block every GPU. A GPU with no NIC is blocked by
// pcie-path alone, though the node's pcie-path check, which looks only at
// GPUs that have a NIC, may have passed. Each check a GPU fails also fails on the node (its pairs are a
// subset of the node's), so the node is ready only when every GPU with a
// NIC is.
func (c Checker) perGPU(in Input, iommuOn bool, nodeBlocking []string) []v1alpha1.GPUDirectGPU {
	gpus := slices.Clone(in.GPUs)
	if len(gpus) == 0 {
		for _, p := range in.Pairs {
			gpus = append(gpus, p.GPU)
		}
	}
	slices.Sort(gpus)
	gpus = slices.Compact(gpus)
	out := make([]v1alpha1.GPUDirectGPU, 0, len(gpus))
	for _, g := range gpus {
		sub := Input{GPUCount: in.GPUCount, NICCount: in.NICCount, GPUs: []int{g}}
		var nics []string
		for _, p := range in.Pairs {
			if p.GPU == g {
				sub.Pairs = append(sub.Pairs, p)
				nics = append(nics, p.NIC)
			}
		}
		slices.Sort(nics)
		r := v1alpha1.GPUDirectGPU{GPU: int32(g), NICs: slices.Compact(nics)}
		blocking := slices.Clone(nodeBlocking)
		if len(sub.Pairs) == 0 {
			blocking = append(blocking, CheckPCIePath)
		}
		for _, ch := range []v1alpha1.GPUDirectCheck{c.pciePath(sub), c.acs(sub, iommuOn), c.nicPort(sub)} {
			if len(sub.Pairs) > 0 && c.blocks(ch, iommuOn) {
				blocking = append(blocking, ch.Name)
			}
		}
		slices.Sort(blocking)
		r.BlockingChecks = blocking
		r.Ready = len(blocking) == 0
		out = append(out, r)
	}
	return out
}

// advisory says whether an Unknown check leaves the node ready: only the
// ACS check when it could not read configuration space (an unprivileged
// agent sees only its first 64 bytes, and ACS lies beyond), as the ACS
// policy says. The check stays Unknown, with the policy in its message.
func (c Checker) advisory(ch v1alpha1.GPUDirectCheck, iommuOn bool) bool {
	if ch.Name != CheckACS || ch.Reason != reasonConfigSpaceUnreadable {
		return false
	}
	switch c.ACSUnknown {
	case ACSUnknownLenient:
		return true
	case ACSUnknownStrict:
		return false
	}
	return !iommuOn
}

// Reasons other code reads.
const (
	// reasonConfigSpaceUnreadable: the ACS capability could not be read.
	reasonConfigSpaceUnreadable = "ConfigSpaceUnreadable"
	reasonIOMMUDisabled         = "IOMMUDisabled"
	reasonIOMMUPassthrough      = "IOMMUPassthrough"
)

func (r Result) check(name string) v1alpha1.GPUDirectCheck {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return v1alpha1.GPUDirectCheck{Name: name, Result: v1alpha1.CheckUnknown}
}

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

// DMABufState is what decides whether the dma-buf path is available on the
// GPU side, and which peer-memory module is loaded.
type DMABufState struct {
	Kernel           string
	KernelOK         bool
	DriverVersion    string
	OpenKernelModule bool
	// PeerMemLoaded: nvidia_peermem, the driver's peer-memory module.
	PeerMemLoaded bool
	// NvPeerMemLoaded: nv_peer_mem, the legacy module MLNX_OFED shipped
	// before nvidia_peermem (driver 470); it does the same job.
	NvPeerMemLoaded bool
}

// ReadDMABufState reads the kernel release, the NVIDIA kernel module flavour
// and whether a peer-memory module is loaded. Unreadable files are joined
// into the error; the state holds what was read.
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
	if _, err := os.Stat(filepath.Join(c.SysRoot, "module", "nv_peer_mem")); err == nil {
		st.NvPeerMemLoaded = true
	}
	return st, errors.Join(errs...)
}

// EFA PCI device ids of generations 1-3 (p4d, p5, p5en), on which
// aws-ofi-nccl leaves dma-buf off by default; later generations register
// GPU memory through dma-buf.
var efaNoDMABuf = map[string]bool{"0xefa0": true, "0xefa1": true, "0xefa2": true}

// nicDMABuf says whether every NIC the GPUs use can register GPU memory
// through dma-buf (ibv_reg_dmabuf_mr), which the NIC's kernel driver must
// support as well as the GPU's: mlx5 since Linux 5.12, EFA from its fourth
// generation. Any other driver is not assumed to. The reasons name each NIC
// that cannot.
func (c Checker) nicDMABuf(in Input) (bool, []string) {
	sys := pci.SysFS{Root: c.SysRoot}
	seen := map[string]bool{}
	var why []string
	for _, p := range in.Pairs {
		if seen[p.NICBDF] {
			continue
		}
		seen[p.NICBDF] = true
		driver := ""
		if target, err := os.Readlink(filepath.Join(sys.DevicePath(p.NICBDF), "driver")); err == nil {
			driver = filepath.Base(target)
		}
		switch driver {
		case "mlx5_core":
		case "efa":
			id, err := os.ReadFile(filepath.Join(sys.DevicePath(p.NICBDF), "device"))
			dev := strings.TrimSpace(string(id))
			switch {
			case err != nil:
				why = append(why, fmt.Sprintf("%s (efa): PCI device id unreadable: %v", p.NIC, err))
			case efaNoDMABuf[dev]:
				why = append(why, fmt.Sprintf("%s is an EFA device %s, a generation without dma-buf", p.NIC, dev))
			}
		case "":
			why = append(why, fmt.Sprintf("%s has no driver bound that sysfs names", p.NIC))
		default:
			why = append(why, fmt.Sprintf("%s's driver %s is not known to register dma-buf memory", p.NIC, driver))
		}
	}
	slices.Sort(why)
	return len(why) == 0, why
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

func (c Checker) memoryAccess(in Input) (v1alpha1.GPUDirectCheck, v1alpha1.GPUDirectMode) {
	st, err := c.ReadDMABufState()
	gpuDMABuf := st.KernelOK && st.OpenKernelModule
	nicDMABuf, nicWhy := c.nicDMABuf(in)
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
	if gpuDMABuf && !nicDMABuf {
		why = append(why, "dma-buf is not supported on the NIC side: "+strings.Join(nicWhy, ", "))
	}
	switch {
	case gpuDMABuf && nicDMABuf:
		return pass(CheckMemoryAccess, "DMABuf", fmt.Sprintf("kernel %s supports dma-buf, the NVIDIA open kernel module %s is loaded, and every NIC's driver registers dma-buf memory", st.Kernel, st.DriverVersion)), v1alpha1.GPUDirectDMABuf
	case st.PeerMemLoaded:
		return pass(CheckMemoryAccess, "PeerMem", "nvidia_peermem is loaded (no dma-buf: "+strings.Join(why, "; ")+")"), v1alpha1.GPUDirectPeerMem
	case st.NvPeerMemLoaded:
		return pass(CheckMemoryAccess, "NvPeerMem", "the legacy nv_peer_mem module is loaded (no dma-buf: "+strings.Join(why, "; ")+")"), v1alpha1.GPUDirectPeerMem
	}
	why = append(why, "neither nvidia_peermem nor nv_peer_mem is loaded")
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

// RedirectMasks maps each bridge the checks look at to the ACS redirect bits
// that would stop its pairs' GPUDirect traffic going peer to peer. A pair
// through a NIC's main function counts both redirect bits on every bridge
// of its path. A Data Direct pair counts only the two ports where its path
// turns, each for the bit that acts on the traffic entering there: the NIC
// writes and reads GPU memory, so its requests enter at the Data Direct
// function's port (request redirect must be off there) and the GPU's
// completions at the GPU's port (completion redirect must be off there).
// This is the setting rdma_topo (linux-rdma rdma-core) prescribes for these
// trays: request redirect on at the GPU's port and completion redirect on at
// the Data Direct function's port stay, as GPUDirect RDMA does not need them
// off.
func RedirectMasks(in Input) map[string]uint16 {
	out := map[string]uint16{}
	for _, p := range in.Pairs {
		if !p.DataDirect {
			for _, b := range p.Bridges {
				out[b] |= pci.ACSRedirectBits
			}
			continue
		}
		if p.DMAPort != "" {
			out[p.DMAPort] |= pci.ACSP2PRequestRedirect
		}
		if p.GPUPort != "" {
			out[p.GPUPort] |= pci.ACSP2PCompletionRedirect
		}
	}
	return out
}

func sortedKeys(m map[string]uint16) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// atsEnabled reads every pair's NIC's ATS state: all enabled, and the
// NICs whose state is unreadable.
func (c Checker) atsEnabled(in Input) (bool, []string) {
	all := true
	var unreadable []string
	seen := map[string]bool{}
	for _, p := range in.Pairs {
		if seen[p.dmaBDF()] {
			continue
		}
		seen[p.dmaBDF()] = true
		ats, err := pci.ReadATS(c.Config, p.dmaBDF())
		if err != nil {
			unreadable = append(unreadable, err.Error())
			all = false
			continue
		}
		all = all && ats.Enabled
	}
	return all && len(in.Pairs) > 0, unreadable
}

func (c Checker) acs(in Input, iommuOn bool) v1alpha1.GPUDirectCheck {
	masks := RedirectMasks(in)
	bridges := sortedKeys(masks)
	if len(in.Pairs) == 0 {
		return unknown(CheckACS, "NoGPUNICPairs", "no GPU has a NIC to check")
	}
	var redirecting, direct, unreadable []string
	var ats *bool
	for _, b := range bridges {
		acs, err := pci.ReadACS(c.Config, b)
		if err != nil {
			unreadable = append(unreadable, err.Error())
			continue
		}
		if !acs.Present || acs.Control&masks[b] == 0 {
			continue
		}
		// With ATS on the NICs and Direct Translated P2P on the bridge,
		// translated requests go straight to the GPU: NVIDIA's supported
		// setup for GPUDirect RDMA with the IOMMU translating.
		if acs.DirectTranslated() {
			if ats == nil {
				ok, _ := c.atsEnabled(in)
				ats = &ok
			}
			if *ats {
				direct = append(direct, b)
				continue
			}
		}
		redirecting = append(redirecting, fmt.Sprintf("%s (ACS control %#04x)", b, acs.Control))
	}
	switch {
	case len(redirecting) > 0:
		return fail(CheckACS, "ACSRedirectEnabled", "P2P request/completion redirect is enabled on bridges "+strings.Join(redirecting, ", "))
	case len(unreadable) > 0:
		policy := c.ACSUnknown
		if policy == "" {
			policy = ACSUnknownAuto
		}
		effect := "the node stays not ready"
		if c.advisory(v1alpha1.GPUDirectCheck{Name: CheckACS, Reason: reasonConfigSpaceUnreadable}, iommuOn) {
			effect = "the node may still be ready"
		}
		iommu := "no IOMMU is enabled"
		if iommuOn {
			iommu = "an IOMMU is enabled, so Linux most likely turned ACS redirect on"
		}
		return unknown(CheckACS, reasonConfigSpaceUnreadable, fmt.Sprintf("ACS policy %s, %s: %s; %s", policy, iommu, effect, strings.Join(unreadable, "; ")))
	case len(direct) > 0:
		return pass(CheckACS, "DirectTranslatedP2P", fmt.Sprintf("redirect is on but translated P2P goes direct and every NIC uses ATS, on bridges %s", strings.Join(direct, ", ")))
	}
	return pass(CheckACS, "NoACSRedirect", fmt.Sprintf("no P2P redirect on the %d bridges between GPUs and NICs", len(bridges)))
}

// iommu checks the IOMMU's DMA translation for the GPUs and NICs, and says
// whether an IOMMU is enabled at all.
func (c Checker) iommu(in Input) (v1alpha1.GPUDirectCheck, bool) {
	iommuDir := filepath.Join(c.SysRoot, "class", "iommu")
	entries, err := os.ReadDir(iommuDir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		return pass(CheckIOMMU, reasonIOMMUDisabled, "no IOMMU is enabled"), false
	}
	if err != nil {
		return unknown(CheckIOMMU, "Unreadable", fmt.Sprintf("listing %s: %v", iommuDir, err)), true
	}
	var devs []string
	for _, p := range in.Pairs {
		devs = append(devs, p.GPUBDF, p.dmaBDF())
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
		ats, atsUnreadable := c.atsEnabled(in)
		switch {
		case ats:
			return pass(CheckIOMMU, "IOMMUTranslationWithATS", "IOMMU translates DMA for "+strings.Join(translated, ", ")+", and every NIC uses ATS, which NVIDIA supports for GPUDirect RDMA"), true
		case len(atsUnreadable) > 0:
			return unknown(CheckIOMMU, "ATSUnknown", "IOMMU translates DMA for "+strings.Join(translated, ", ")+"; whether the NICs use ATS is unreadable: "+strings.Join(atsUnreadable, "; ")), true
		}
		return fail(CheckIOMMU, "IOMMUTranslation", "IOMMU translates DMA for "+strings.Join(translated, ", ")+" and the NICs do not use ATS; GPUDirect RDMA needs iommu=pt, the IOMMU off, or ATS"), true
	case len(unreadable) > 0:
		return unknown(CheckIOMMU, "Unreadable", strings.Join(unreadable, "; ")), true
	}
	return pass(CheckIOMMU, reasonIOMMUPassthrough, "the IOMMU is in passthrough (identity) mode for GPUs and NICs"), true
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
	return pass(CheckNICPort, "NICPortsActive", fmt.Sprintf("all %d NICs the GPUs use are Active", len(seen)))
}
