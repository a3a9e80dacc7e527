package gpu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

func TestNormalizePCIBusID(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "00000000:1A:00.0", want: "0000:1a:00.0"},
		{in: "00000008:01:00.0", want: "0008:01:00.0"},
		{in: "0000:c1:00.1", want: "0000:c1:00.1"},
		{in: "00010000:1A:00.0", err: "wider than 16 bits"},
		{in: "1A:00.0", err: "not domain:bus:device.function"},
		{in: "0000:1a:00.8", err: "not domain:bus:device.function"},
	} {
		got, err := NormalizePCIBusID(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizePCIBusID(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizePCIBusID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func bdf(i int) string { return fmt.Sprintf("0000:%02x:00.0", 0x10+i) }

func direct(peers ...int) []NVLink {
	var l []NVLink
	for i, p := range peers {
		l = append(l, NVLink{Link: i, Active: true, RemoteType: RemoteGPU, RemotePCIBusID: bdf(p)})
	}
	return l
}

func TestIslandsFromDirectLinks(t *testing.T) {
	// 0-1 and 1-2 bridged (a chain is one island), 3 alone with an inactive
	// link to 4, 4-5 bridged but with P2P disabled.
	devs := []DeviceInfo{
		{UUID: "GPU-0", PCIBusID: bdf(0), NVLinks: direct(1)},
		{UUID: "GPU-1", PCIBusID: bdf(1), NVLinks: direct(0, 2)},
		{UUID: "GPU-2", PCIBusID: bdf(2), NVLinks: direct(1)},
		{UUID: "GPU-3", PCIBusID: bdf(3), NVLinks: []NVLink{{Link: 0, Active: false, RemoteType: RemoteGPU, RemotePCIBusID: bdf(4)}}},
		{UUID: "GPU-4", PCIBusID: bdf(4), NVLinks: direct(5)},
		{UUID: "GPU-5", PCIBusID: bdf(5), NVLinks: direct(4)},
	}
	f := NewFake(devs...)
	f.DisableP2P(4, 5)
	inv, err := Discover(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(inv.Islands); got != "[[0 1 2] [3] [4] [5]]" {
		t.Errorf("islands = %s", got)
	}
	if got := fmt.Sprint(inv.GPUs[1].Peers); got != "[0 2]" {
		t.Errorf("GPU 1 peers = %s", got)
	}
	if inv.GPUs[2].Island != 0 || inv.GPUs[5].Island != 3 {
		t.Errorf("island ids %d %d", inv.GPUs[2].Island, inv.GPUs[5].Island)
	}
}

func TestIslandsBehindNVSwitch(t *testing.T) {
	var devs []DeviceInfo
	for i := range 4 {
		devs = append(devs, DeviceInfo{UUID: fmt.Sprint("GPU-", i), PCIBusID: bdf(i),
			NVLinks: []NVLink{{Link: 0, Active: true, RemoteType: RemoteNVSwitch, RemotePCIBusID: "0000:c0:00.0"}}})
	}
	// GPU 4 has its NVLinks down: it is alone.
	devs = append(devs, DeviceInfo{UUID: "GPU-4", PCIBusID: bdf(4), NVLinks: []NVLink{{Link: 0, RemoteType: RemoteUnknown}}})
	inv, err := Discover(context.Background(), NewFake(devs...))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(inv.Islands); got != "[[0 1 2 3] [4]]" {
		t.Errorf("islands = %s", got)
	}
	if got := fmt.Sprint(inv.GPUs[2].Peers); got != "[0 1 3]" {
		t.Errorf("GPU 2 peers = %s", got)
	}
}

func TestDiscoverErrors(t *testing.T) {
	f := NewFake(DeviceInfo{UUID: "GPU-0", PCIBusID: bdf(0)}, DeviceInfo{UUID: "GPU-1", PCIBusID: bdf(1)})
	f.SetDeviceError(0, ErrGPULost)
	inv, err := Discover(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.GPUs) != 1 || inv.GPUs[0].Index != 1 || len(inv.Lost) != 1 || !errors.Is(inv.Lost[0].Err, ErrGPULost) {
		t.Errorf("inventory = %+v", inv)
	}
	f.SetInitError(ErrLibraryNotFound)
	if _, err := Discover(context.Background(), f); !errors.Is(err, ErrLibraryNotFound) {
		t.Errorf("Discover with no library: %v", err)
	}
}

// NVSwitch links report an all-ones remote PCI id: no warning, no remote id,
// and the link counts as switched even when the driver cannot say its type.
func TestNVSwitchRemoteIDIsNotAWarning(t *testing.T) {
	links := func(remoteType RemoteType, id string) []NVLink {
		var out []NVLink
		for l := range 18 {
			out = append(out, NVLink{Link: l, Active: true, RemoteType: remoteType, RemotePCIBusID: id})
		}
		return out
	}
	f := NewFake(
		DeviceInfo{UUID: "GPU-0", PCIBusID: "0000:18:00.0", NVLinks: links(RemoteNVSwitch, "FFFFFFFF:FF:FF.0")},
		DeviceInfo{UUID: "GPU-1", PCIBusID: "0000:2a:00.0", NVLinks: links(RemoteUnknown, "ffffffff:ff:ff.0")},
		DeviceInfo{UUID: "GPU-2", PCIBusID: "0000:3a:00.0", NVLinks: links(RemoteGPU, "00010000:1A:00.0")},
	)
	inv, err := Discover(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range inv.GPUs[:2] {
		if len(g.Warnings) != 0 {
			t.Errorf("GPU %d warnings %q, want none", g.Index, g.Warnings)
		}
		for _, l := range g.NVLinks {
			if l.RemotePCIBusID != "" || l.RemoteType != RemoteNVSwitch {
				t.Errorf("GPU %d link %d: remote %q type %s, want no id and NVSwitch", g.Index, l.Link, l.RemotePCIBusID, l.RemoteType)
			}
		}
	}
	if fmt.Sprint(inv.GPUs[0].Peers, inv.GPUs[1].Peers) != "[1] [0]" {
		t.Errorf("peers %v %v, want each other through the switch", inv.GPUs[0].Peers, inv.GPUs[1].Peers)
	}
	// A truly malformed id is still a warning, one per link, naming it.
	if w := inv.GPUs[2].Warnings; len(w) != 18 || !strings.Contains(w[0], "NVLink 0 remote") || !strings.Contains(w[0], "wider than 16 bits") {
		t.Errorf("GPU 2 warnings %q", w)
	}
}

// A hung NVML call fails discovery after the deadline and keeps failing at
// once, naming the hung call, until it returns.
func TestDeadline(t *testing.T) {
	f := NewFake(DeviceInfo{UUID: "GPU-0", PCIBusID: "0000:18:00.0"})
	d := &Deadline{Lib: f, Timeout: 50 * time.Millisecond, Clock: clock.RealClock{}}
	if inv, err := Discover(context.Background(), d); err != nil || len(inv.GPUs) != 1 {
		t.Fatalf("Discover = %+v, %v", inv, err)
	}
	release := f.Hang()
	defer release()
	_, err := Discover(context.Background(), d)
	if !errors.Is(err, ErrNVMLTimeout) || !strings.Contains(err.Error(), "DeviceCount did not return within 50ms") {
		t.Fatalf("Discover with a hung call: %v", err)
	}
	if call, _, ok := d.Hung(); !ok || call != "DeviceCount" {
		t.Errorf("Hung() = %q, %v", call, ok)
	}
	start := time.Now()
	if _, err := Discover(context.Background(), d); !errors.Is(err, ErrNVMLTimeout) || !strings.Contains(err.Error(), "not attempted: DeviceCount has not returned") || time.Since(start) > 40*time.Millisecond {
		t.Errorf("second Discover: %v after %v", err, time.Since(start))
	}
	release()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, _, ok := d.Hung(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still hung after the call returned")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := Discover(context.Background(), d); err != nil {
		t.Errorf("after the call returned: %v", err)
	}
}
