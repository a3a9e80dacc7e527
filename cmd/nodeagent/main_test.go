package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

func parse(t *testing.T, args ...string) *options {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var o options
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &o
}

func TestValidate(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	err := parse(t, "--heartbeat-interval=0s", "--max-gpudirect-level=FAR", "--acs-unknown-policy=loose", "--dra-driver=GPU_nvidia").validate()
	for _, want := range []string{"--node-name", "--heartbeat-interval", "--max-gpudirect-level", `--acs-unknown-policy: ACS policy "loose"`, `--dra-driver "GPU_nvidia"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate() = %v, want it to mention %s", err, want)
		}
	}
	t.Setenv("NODE_NAME", "gpu-1")
	if err := parse(t).validate(); err != nil {
		t.Errorf("defaults with NODE_NAME: %v", err)
	}
	if o := parse(t); o.draDriver != "gpu.nvidia.com" {
		t.Errorf("--dra-driver defaults to %q, want gpu.nvidia.com", o.draDriver)
	}
	if err := parse(t, "--dra-driver=").validate(); err != nil {
		t.Errorf("an empty --dra-driver turns DRA off and is valid: %v", err)
	}
}

func TestLeafSourceList(t *testing.T) {
	run := runner.NewFake()
	srcs, err := parse(t).leafSourceList(run)
	if err != nil || len(srcs) != 1 || srcs[0].Name() != "label" {
		t.Errorf("default sources = %v, %v (static is skipped without a file; lldp needs an overlay)", srcs, err)
	}
	if _, err := parse(t, "--leaf-sources=infiniband").leafSourceList(run); err == nil || !strings.Contains(err.Error(), "--enable-infiniband-probe") {
		t.Errorf("infiniband without the opt-in flag: %v", err)
	}
	if srcs, err := parse(t, "--leaf-sources=infiniband,label", "--enable-infiniband-probe").leafSourceList(run); err != nil || srcs[0].Name() != "infiniband" {
		t.Errorf("infiniband opted in: %v, %v", srcs, err)
	}
	if _, err := parse(t, "--static-topology-file=/nonexistent/topo.yaml").leafSourceList(run); err == nil || !strings.Contains(err.Error(), "/nonexistent/topo.yaml") {
		t.Errorf("missing static file: %v", err)
	}
}

func TestFindNVML(t *testing.T) {
	root := t.TempDir()
	for _, dir := range []string{"usr/lib/aarch64-linux-gnu", "usr/lib64"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, "libnvidia-ml.so.1"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := findNVML(root, "arm64"); got != filepath.Join(root, "usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1") {
		t.Errorf("arm64: %s", got)
	}
	if got := findNVML(root, "amd64"); got != filepath.Join(root, "usr/lib64/libnvidia-ml.so.1") {
		t.Errorf("amd64 (RHEL layout): %s", got)
	}
	if got := findNVML(t.TempDir(), "amd64"); got != "" {
		t.Errorf("no library: %q, want the loader's search", got)
	}
}
