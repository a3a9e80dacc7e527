package pci

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// PCIe extended capability constants (PCIe base spec, 7.7.8 ACS).
const (
	extCapStart = 0x100
	configSize  = 4096
	// CapACS is the Access Control Services extended capability id.
	CapACS = 0x000D
	// CapATS is the Address Translation Services extended capability id;
	// its control register (at +6) has the Enable bit at 15.
	CapATS           = 0x000F
	atsControlOffset = 6
	atsEnable        = 1 << 15

	// ACS Control register bits, at the capability + 6.
	ACSSourceValidation        = 1 << 0
	ACSTranslationBlocking     = 1 << 1
	ACSP2PRequestRedirect      = 1 << 2
	ACSP2PCompletionRedirect   = 1 << 3
	ACSUpstreamForwarding      = 1 << 4
	ACSP2PEgressControl        = 1 << 5
	ACSDirectTranslatedP2P     = 1 << 6
	acsControlOffset           = 6
	ACSRedirectBits            = ACSP2PRequestRedirect | ACSP2PCompletionRedirect
	maxExtendedCapabilityCount = (configSize - extCapStart) / 4
)

// ConfigSpace reads and writes devices' PCI configuration space.
type ConfigSpace interface {
	// ReadConfig returns the device's configuration space, as much of it as
	// the caller may read (unprivileged readers get the first 64 bytes).
	ReadConfig(bdf string) ([]byte, error)
	// WriteConfig16 writes a little-endian 16-bit value at offset.
	WriteConfig16(bdf string, offset int, value uint16) error
}

var _ ConfigSpace = SysFS{}

// ConfigPath is the device's sysfs config file.
func (s SysFS) ConfigPath(bdf string) string {
	return filepath.Join(s.DevicePath(bdf), "config")
}

// ReadConfig reads the device's sysfs config file.
func (s SysFS) ReadConfig(bdf string) ([]byte, error) {
	path := s.ConfigPath(bdf)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, configSize))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// WriteConfig16 writes two bytes at offset of the device's sysfs config file.
func (s SysFS) WriteConfig16(bdf string, offset int, value uint16) error {
	path := s.ConfigPath(bdf)
	if offset < 0 || offset+2 > configSize {
		return fmt.Errorf("writing %s: offset %#x out of range", path, offset)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s for writing: %w", path, err)
	}
	var buf [2]byte
	binary.LittleEndian.PutUint16(buf[:], value)
	if _, err := f.WriteAt(buf[:], int64(offset)); err != nil {
		f.Close()
		return fmt.Errorf("writing %s at %#x: %w", path, offset, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	return nil
}

// ErrNoExtendedConfig is returned when the config space is too short to hold
// extended capabilities, typically because the reader is not root.
var ErrNoExtendedConfig = fmt.Errorf("configuration space is shorter than %d bytes (reading it whole needs root)", configSize)

// FindExtendedCapability walks the extended capability list from 0x100 and
// returns the offset of capability id, or 0 when the device has none.
func FindExtendedCapability(cfg []byte, id uint16) (int, error) {
	if len(cfg) < configSize {
		return 0, ErrNoExtendedConfig
	}
	offset := extCapStart
	for range maxExtendedCapabilityCount {
		header := binary.LittleEndian.Uint32(cfg[offset:])
		if header == 0 || header == 0xffffffff {
			return 0, nil
		}
		if uint16(header&0xffff) == id {
			return offset, nil
		}
		next := int(header >> 20)
		if next == 0 {
			return 0, nil
		}
		if next < extCapStart || next > configSize-4 || next&3 != 0 {
			return 0, fmt.Errorf("extended capability at %#x points to invalid next offset %#x", offset, next)
		}
		offset = next
	}
	return 0, fmt.Errorf("extended capability list loops (more than %d entries)", maxExtendedCapabilityCount)
}

// ACS is a bridge's Access Control Services state.
type ACS struct {
	// Present is false when the device has no ACS capability.
	Present bool
	// Offset of the capability in configuration space.
	Offset  int
	Control uint16
}

// Redirects reports whether P2P request or completion redirect is enabled,
// which sends peer-to-peer traffic up to the root complex.
func (a ACS) Redirects() bool { return a.Control&ACSRedirectBits != 0 }

// ControlOffset is where the ACS Control register sits.
func (a ACS) ControlOffset() int { return a.Offset + acsControlOffset }

// ParseACS reads the ACS capability from a configuration space.
func ParseACS(cfg []byte) (ACS, error) {
	off, err := FindExtendedCapability(cfg, CapACS)
	if err != nil || off == 0 {
		return ACS{}, err
	}
	if off+acsControlOffset+2 > len(cfg) {
		return ACS{}, fmt.Errorf("ACS capability at %#x runs past the end of configuration space", off)
	}
	ctrl := binary.LittleEndian.Uint16(cfg[off+acsControlOffset:])
	return ACS{Present: true, Offset: off, Control: ctrl}, nil
}

// ReadACS reads bdf's ACS capability through cs; errors name the device.
func ReadACS(cs ConfigSpace, bdf string) (ACS, error) {
	cfg, err := cs.ReadConfig(bdf)
	if err != nil {
		return ACS{}, err
	}
	acs, err := ParseACS(cfg)
	if err != nil {
		return ACS{}, fmt.Errorf("PCI device %s: %w", bdf, err)
	}
	return acs, nil
}

// DirectTranslated reports whether translated P2P requests (from a device
// using ATS) go straight to their peer despite redirect.
func (a ACS) DirectTranslated() bool { return a.Control&ACSDirectTranslatedP2P != 0 }

// ATS is a device's Address Translation Services state.
type ATS struct {
	Present, Enabled bool
}

// ReadATS reads bdf's ATS capability through cs; errors name the device.
func ReadATS(cs ConfigSpace, bdf string) (ATS, error) {
	cfg, err := cs.ReadConfig(bdf)
	if err != nil {
		return ATS{}, err
	}
	off, err := FindExtendedCapability(cfg, CapATS)
	if err != nil {
		return ATS{}, fmt.Errorf("PCI device %s: %w", bdf, err)
	}
	if off == 0 {
		return ATS{}, nil
	}
	if off+atsControlOffset+2 > len(cfg) {
		return ATS{}, fmt.Errorf("PCI device %s: ATS capability at %#x runs past the end of configuration space", bdf, off)
	}
	ctrl := binary.LittleEndian.Uint16(cfg[off+atsControlOffset:])
	return ATS{Present: true, Enabled: ctrl&atsEnable != 0}, nil
}
