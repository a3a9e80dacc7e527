package gpudirect

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

// Configurator makes the changes GPUDirect RDMA needs that are safe to make
// on a running node.
type Configurator struct {
	Runner runner.Runner
	Config pci.ConfigSpace
}

// Change is one change Configure made.
type Change struct {
	What string
}

// Configure loads nvidia-peermem when dma-buf is not available, and clears
// ACS P2P request and completion redirect on exactly the bridges between
// GPUs and their NICs (on a Data Direct path, only the bit RedirectMasks
// names on each of its two turning ports), but only where no IOMMU translates their DMA (none,
// or passthrough): with translation, ACS is what keeps devices apart under
// the IOMMU, and GPUDirect RDMA works through ATS instead, so the bits are
// left alone. It logs every change and returns them; the caller runs the
// checks again after.
func (c Configurator) Configure(ctx context.Context, in Input, before Result) ([]Change, error) {
	logger := klog.FromContext(ctx)
	var (
		changes []Change
		errs    []error
	)
	if before.Mode == v1alpha1.GPUDirectNone {
		if _, err := c.Runner.Run(ctx, "modprobe", "nvidia-peermem"); err != nil {
			errs = append(errs, fmt.Errorf("loading nvidia-peermem: %w", err))
		} else {
			logger.Info("Loaded kernel module", "module", "nvidia-peermem")
			changes = append(changes, Change{What: "loaded nvidia-peermem"})
		}
	}
	masks := RedirectMasks(in)
	bridges := sortedKeys(masks)
	if iommu := before.check(CheckIOMMU); iommu.Result != v1alpha1.CheckPass || (iommu.Reason != reasonIOMMUDisabled && iommu.Reason != reasonIOMMUPassthrough) {
		if before.check(CheckACS).Result == v1alpha1.CheckFail {
			logger.Info("Leaving ACS redirect in place: the IOMMU translates DMA (or its mode is unknown), and ACS is what isolates devices under it", "iommu", iommu.Reason)
		}
		bridges = nil
	}
	for _, b := range bridges {
		acs, err := pci.ReadACS(c.Config, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !acs.Present || acs.Control&masks[b] == 0 {
			continue
		}
		// Read the register again right before writing it, so the write
		// changes only the redirect bits that stop the pairs' traffic.
		cfg, err := c.Config.ReadConfig(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cur, err := pci.ParseACS(cfg)
		if err != nil || !cur.Present {
			errs = append(errs, fmt.Errorf("PCI device %s: ACS capability vanished: %v", b, err))
			continue
		}
		next := cur.Control &^ masks[b]
		if err := c.Config.WriteConfig16(b, cur.ControlOffset(), next); err != nil {
			errs = append(errs, fmt.Errorf("clearing ACS redirect on %s: %w", b, err))
			continue
		}
		logger.Info("Cleared ACS P2P redirect", "bridge", b, "from", fmt.Sprintf("%#04x", cur.Control), "to", fmt.Sprintf("%#04x", next))
		changes = append(changes, Change{What: fmt.Sprintf("ACS control on %s %#04x -> %#04x", b, cur.Control, next)})
	}
	return changes, errors.Join(errs...)
}
