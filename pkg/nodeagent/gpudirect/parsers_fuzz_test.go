package gpudirect

import "testing"

func FuzzParseKernelRelease(f *testing.F) {
	for _, s := range []string{"6.8.0-45-generic", "5.15.0", "4.18.0-513.el8.x86_64", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = ParseKernelRelease(s)
	})
}
