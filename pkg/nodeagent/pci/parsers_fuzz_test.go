package pci

import (
	"testing"
)

func FuzzParseACS(f *testing.F) {
	// A config space with an ACS extended capability at 0x100, redirect on.
	cfg := make([]byte, 4096)
	cfg[0x100], cfg[0x101], cfg[0x102], cfg[0x103] = 0x0d, 0x00, 0x01, 0x00
	cfg[0x106] = 0x1c
	f.Add(cfg)
	f.Add(make([]byte, 64))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, cfg []byte) {
		acs, err := ParseACS(cfg)
		if err != nil {
			return
		}
		_ = acs.Redirects()
		if off := acs.ControlOffset(); acs.Present && (off < 0 || off+2 > len(cfg)) {
			t.Fatalf("ACS control offset %d outside config space of %d bytes", off, len(cfg))
		}
	})
}

func FuzzParseDevicePath(f *testing.F) {
	f.Add("/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0", "0000:01:00.0")
	f.Add("/sys/devices/pci0000:17/0000:17:00.0/0000:18:00.0/0000:19:00.0/0000:1a:00.0", "0000:1a:00.0")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, path, bdf string) {
		a, err := parseDevicePath(path, bdf)
		if err != nil {
			return
		}
		b, err := parseDevicePath("/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0", "0000:01:00.0")
		if err != nil {
			t.Fatal(err)
		}
		if r := LevelRank(Level(a, b)); r < 0 {
			t.Fatalf("level rank %d", r)
		}
		_ = PathBridges(a, b)
	})
}
