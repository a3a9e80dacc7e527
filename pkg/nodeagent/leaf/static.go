package leaf

import (
	"context"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
)

// StaticFile is the static topology file, YAML or JSON:
//
//	hosts:
//	  gpu-node-1:
//	    leaf: leaf-a1
//	    spine: spine-1
//	    nics: {mlx5_3: leaf-a2}   # optional per-NIC override
//	guids:
//	  "b8ce:f603:00a1:b2c4": {leaf: leaf-a1, spine: spine-1}
//
// Entries under guids are keyed by the NIC's node GUID in any of the common
// spellings (colons, 0x prefix, case); they win over the host's entry.
type StaticFile struct {
	Hosts map[string]StaticHost  `json:"hosts,omitempty"`
	GUIDs map[string]StaticEntry `json:"guids,omitempty"`
}

// StaticHost is one host's entry.
type StaticHost struct {
	Leaf  string            `json:"leaf,omitempty"`
	Spine string            `json:"spine,omitempty"`
	NICs  map[string]string `json:"nics,omitempty"`
}

// StaticEntry is one GUID's entry.
type StaticEntry struct {
	Leaf  string `json:"leaf"`
	Spine string `json:"spine,omitempty"`
}

// Static reads a StaticFile on every lookup, so edits apply without a restart.
type Static struct {
	Path string
}

var _ Source = Static{}

func (Static) Name() v1alpha1.LeafSource { return v1alpha1.LeafSourceStatic }

// Load reads and validates the file.
func (s Static) Load() (StaticFile, error) {
	data, err := os.ReadFile(s.Path)
	if err != nil {
		return StaticFile{}, fmt.Errorf("reading static topology file: %w", err)
	}
	var f StaticFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return StaticFile{}, fmt.Errorf("parsing static topology file %s: %w", s.Path, err)
	}
	guids := make(map[string]StaticEntry, len(f.GUIDs))
	for k, v := range f.GUIDs {
		g, err := NormalizeGUID(k)
		if err != nil {
			return StaticFile{}, fmt.Errorf("static topology file %s: guids[%q]: %w", s.Path, k, err)
		}
		if v.Leaf == "" {
			return StaticFile{}, fmt.Errorf("static topology file %s: guids[%q].leaf is required", s.Path, k)
		}
		guids[g] = v
	}
	f.GUIDs = guids
	return f, nil
}

func (s Static) Lookup(_ context.Context, node Node, nics []NIC) (map[string]Result, error) {
	f, err := s.Load()
	if err != nil {
		return nil, err
	}
	host, hasHost := f.Hosts[node.Name]
	out := map[string]Result{}
	for _, n := range nics {
		if n.NodeGUID != "" {
			if g, err := NormalizeGUID(n.NodeGUID); err == nil {
				if e, ok := f.GUIDs[g]; ok {
					out[n.Name] = Result{Leaf: e.Leaf, Spine: e.Spine}
					continue
				}
			}
		}
		if !hasHost {
			continue
		}
		leaf := host.Leaf
		if l, ok := host.NICs[n.Name]; ok {
			leaf = l
		} else if l, ok := host.NICs[n.NetDev]; ok && n.NetDev != "" {
			leaf = l
		}
		if leaf != "" {
			out[n.Name] = Result{Leaf: leaf, Spine: host.Spine}
		}
	}
	if hasHost && host.Spine != "" && len(out) == 0 {
		// A host entry with only a spine still places the node.
		out[""] = Result{Spine: host.Spine}
	}
	return out, nil
}

// NormalizeGUID turns b8ce:f603:00a1:b2c4, 0xB8CEF60300A1B2C4 and friends
// into 16 lower-case hex digits.
func NormalizeGUID(s string) (string, error) {
	g := strings.ToLower(strings.TrimSpace(s))
	g = strings.TrimPrefix(g, "0x")
	g = strings.ReplaceAll(g, ":", "")
	if len(g) != 16 {
		return "", fmt.Errorf("GUID %q does not have 16 hex digits", s)
	}
	for _, c := range g {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("GUID %q is not hexadecimal", s)
		}
	}
	return g, nil
}
