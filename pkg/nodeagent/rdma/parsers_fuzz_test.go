package rdma

import "testing"

// The sysfs files the agent reads for each RDMA port.
func FuzzParseSysfsValues(f *testing.F) {
	f.Add("4: ACTIVE", "400 Gb/sec (4X NDR)")
	f.Add("1: DOWN", "100 Gb/sec (2X HDR)")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, state, rate string) {
		_, _ = ParseState(state)
		if r, err := ParseRate(rate); err == nil && r < 0 {
			t.Fatalf("ParseRate(%q) = %d", rate, r)
		}
	})
}

// The vpd file of a ConnectX function, whose V3 keyword pairs a NIC with its
// Data Direct function.
func FuzzParseVPDKeyword(f *testing.F) {
	f.Add([]byte{0x82, 0x01, 0x00, 'N', 0x90, 0x07, 0x00, 'V', '3', 0x04, 'a', 'b', 'c', 'd', 0x78})
	f.Add([]byte{0x82, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, vpd []byte) {
		v, ok, err := ParseVPDKeyword(vpd, "V3")
		if (err != nil || !ok) && v != "" {
			t.Fatalf("ParseVPDKeyword(%x) = %q, %v, %v", vpd, v, ok, err)
		}
	})
}
