package integration

import (
	"flag"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The apiserver's test helpers turn klog up to -v=5 when imported; that
	// buries a failure under megabytes of apiserver logs. -v set on the
	// command line still wins.
	if f := flag.Lookup("v"); f != nil && !isSet("v") {
		_ = f.Value.Set("1")
	}
	os.Exit(m.Run())
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
