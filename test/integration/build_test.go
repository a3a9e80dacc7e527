package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/tandem-sched/tandem/internal/controlplane"
)

// goCmd runs the go command in the repository with extra environment.
func goCmd(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = controlplane.RepoRoot()
	cmd.Env = append(append(os.Environ(), "CGO_CFLAGS=-O2 -g -Wno-deprecated-declarations"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The Makefile stamps both binaries with a Kubernetes semantic version that
// follows go.mod's k8s.io/kubernetes, with tandem's commit as build
// metadata; both print it with --version, and the scheduler starts up with
// it (kube-scheduler parses it and compares it with the version its feature
// gates emulate) up to the point where it needs its kubeconfig.
func TestBinariesPrintTheirStampedVersion(t *testing.T) {
	kube, err := goCmd(t, nil, "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, kube)
	}
	kube = strings.TrimSpace(kube)
	mk := exec.Command("make", "-s", "--no-print-directory", "version", "ldflags")
	mk.Dir = controlplane.RepoRoot()
	out, err := mk.Output()
	if err != nil {
		t.Fatalf("make version ldflags: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("make version ldflags printed %q", out)
	}
	version, ldflags := lines[0], lines[1]
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(kube) + `\+tandem\.[0-9a-f]{7,}(-dirty)?$`).MatchString(version) {
		t.Fatalf("make version = %q, want %s+tandem.<commit>", version, kube)
	}
	if !strings.Contains(ldflags, "k8s.io/component-base/version.gitVersion="+version) {
		t.Fatalf("make ldflags %q does not stamp gitVersion %s", ldflags, version)
	}

	dir := t.TempDir()
	for _, cmd := range []string{"scheduler", "nodeagent"} {
		if out, err := goCmd(t, nil, "build", "-ldflags", ldflags, "-o", filepath.Join(dir, cmd), "./cmd/"+cmd); err != nil {
			t.Fatalf("go build ./cmd/%s: %v\n%s", cmd, err, out)
		}
		out, err := exec.Command(filepath.Join(dir, cmd), "--version").CombinedOutput()
		if err != nil {
			t.Errorf("%s --version: %v\n%s", cmd, err, out)
		}
		if !strings.Contains(string(out), version) {
			t.Errorf("%s --version printed %q, want it to name %s", cmd, out, version)
		}
	}

	// Flags, the effective version and feature gates are set up before the
	// kubeconfig is read: a stamped version kube-scheduler could not parse
	// or emulate would panic or fail here first.
	missing := filepath.Join(dir, "no-such-kubeconfig")
	out, err = exec.Command(filepath.Join(dir, "scheduler"), "--kubeconfig="+missing, "--secure-port=0", "--leader-elect=false").CombinedOutput()
	if err == nil {
		t.Fatalf("scheduler with a missing kubeconfig exited 0:\n%s", out)
	}
	if strings.Contains(string(out), "panic") {
		t.Fatalf("scheduler panicked at start-up with version %s:\n%s", version, out)
	}
	if !strings.Contains(string(out), missing) {
		t.Errorf("scheduler failed before reading its kubeconfig:\n%s", out)
	}
}

// dockerfile is what the build checks read from one of build/*.Dockerfile.
type dockerfile struct {
	path string
	// builds maps each go build's output (-o) to its package and cgo.
	builds map[string]goBuild
	// copied are the build stage's outputs COPY --from=build takes.
	copied []string
	// goImage is the Go version of the golang build image.
	goImage string
}

type goBuild struct {
	pkg string
	cgo bool
}

var (
	goBuildRe = regexp.MustCompile(`go build\b.*?-o\s+(\S+)\s+(\./\S+)`)
	goImageRe = regexp.MustCompile(`^FROM\s+(?:--platform=\S+\s+)?golang:(\d+\.\d+)`)
)

// parseDockerfile joins continued lines and reads FROM, RUN and COPY.
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{path: path, builds: map[string]goBuild{}}
	var instructions []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		instructions = append(instructions, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	cgo := false
	for _, ins := range instructions {
		fields := strings.Fields(ins)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			if m := goImageRe.FindStringSubmatch(ins); m != nil {
				d.goImage = m[1]
			}
		case "ENV", "RUN":
			if strings.Contains(ins, "CGO_ENABLED=1") {
				cgo = true
			}
			if strings.Contains(ins, "CGO_ENABLED=0") {
				cgo = false
			}
			for _, m := range goBuildRe.FindAllStringSubmatch(ins, -1) {
				d.builds[m[1]] = goBuild{pkg: m[2], cgo: cgo}
			}
		case "COPY":
			if len(fields) >= 4 && fields[1] == "--from=build" {
				d.copied = append(d.copied, fields[2:len(fields)-1]...)
			}
		}
	}
	return d
}

// Each image's Dockerfile copies binaries its build stage builds, from
// packages in this repository, on a Go image no older than go.mod asks for,
// and those packages build for both architectures the images are made for.
func TestDockerfilesBuildForBothArchitectures(t *testing.T) {
	root := controlplane.RepoRoot()
	paths, err := filepath.Glob(filepath.Join(root, "build", "*.Dockerfile"))
	if err != nil || len(paths) != 2 {
		t.Fatalf("build/*.Dockerfile: %v %v, want the scheduler's and the agent's", paths, err)
	}
	goMod, err := goCmd(t, nil, "list", "-m", "-f", "{{.GoVersion}}")
	if err != nil {
		t.Fatal(err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimSpace(goMod), "%d.%d", &major, &minor); err != nil {
		t.Fatalf("go.mod go version %q: %v", goMod, err)
	}
	checked := map[goBuild]bool{}
	for _, path := range paths {
		d := parseDockerfile(t, path)
		name := filepath.Base(path)
		var imgMajor, imgMinor int
		if _, err := fmt.Sscanf(d.goImage, "%d.%d", &imgMajor, &imgMinor); err != nil {
			t.Errorf("%s: no golang:<version> build image", name)
		} else if imgMajor < major || (imgMajor == major && imgMinor < minor) {
			t.Errorf("%s: golang:%s is older than go.mod's go %s", name, d.goImage, strings.TrimSpace(goMod))
		}
		if len(d.copied) == 0 {
			t.Errorf("%s copies nothing from its build stage", name)
		}
		for _, out := range d.copied {
			b, ok := d.builds[out]
			if !ok {
				t.Errorf("%s copies %s, which no go build in it writes", name, out)
				continue
			}
			dir := filepath.Join(root, filepath.FromSlash(b.pkg))
			if goFiles, _ := filepath.Glob(filepath.Join(dir, "*.go")); len(goFiles) == 0 {
				t.Errorf("%s builds %s, which is no Go package in the repository", name, b.pkg)
				continue
			}
			checked[b] = true
		}
	}
	for b := range checked {
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(strings.TrimPrefix(b.pkg, "./cmd/")+"/"+arch, func(t *testing.T) {
				env := []string{"GOOS=linux", "GOARCH=" + arch, "CGO_ENABLED=0"}
				if b.cgo {
					env[2] = "CGO_ENABLED=1"
					if arch != runtime.GOARCH {
						cc := map[string]string{"arm64": "aarch64-linux-gnu-gcc", "amd64": "x86_64-linux-gnu-gcc"}[arch]
						if _, err := exec.LookPath(cc); err != nil {
							// Without the cross compiler only the Go side
							// can be checked: every package resolves for
							// the architecture (hack/install-cross-cc.sh
							// installs it).
							out, err := goCmd(t, env, "list", "-deps", "-f", "{{if .Error}}{{.ImportPath}}: {{.Error}}{{end}}", b.pkg)
							if err != nil || strings.TrimSpace(out) != "" {
								t.Fatalf("go list %s for linux/%s: %v\n%s", b.pkg, arch, err, out)
							}
							t.Logf("%s not found: checked %s's packages for linux/%s, not compiled its C", cc, b.pkg, arch)
							return
						}
						env = append(env, "CC="+cc)
					}
				}
				out, err := goCmd(t, env, "build", "-o", filepath.Join(t.TempDir(), "bin"), b.pkg)
				if err != nil {
					t.Fatalf("go build %s for linux/%s (%v): %v\n%s", b.pkg, arch, env, err, out)
				}
			})
		}
	}
}
