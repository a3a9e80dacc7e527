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
