package topology

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// node builds the labels of a node at the given domains of DefaultLevels;
// an empty argument leaves that label off.
func node(zone, spine, leaf, nvlink string) map[string]string {
	labels := map[string]string{"kubernetes.io/hostname": "n"}
	for key, value := range map[string]string{
		LabelZone:         zone,
		LabelSpine:        spine,
		LabelLeaf:         leaf,
		LabelNVLinkDomain: nvlink,
	} {
		if value != "" {
			labels[key] = value
		}
	}
	return labels
}

func TestPathOf(t *testing.T) {
	l := DefaultLevels()
	require.Equal(t, DomainPath{"z1", "s1", "l1", "nv1"}, l.PathOf(node("z1", "s1", "l1", "nv1")))
	require.Equal(t, DomainPath{"", "s1", "l1", ""}, l.PathOf(node("", "s1", "l1", "")))
	require.Equal(t, DomainPath{"", "", "", ""}, l.PathOf(nil))
}

func TestDomainID(t *testing.T) {
	l := DefaultLevels()
	tests := []struct {
		name  string
		path  DomainPath
		level int
		want  string
	}{
		{name: "coarsest", path: DomainPath{"z1", "s1", "l1", "nv1"}, level: 0, want: "z1"},
		{name: "leaf joins coarser values", path: DomainPath{"z1", "s1", "l1", "nv1"}, level: 2, want: "z1/s1/l1"},
		{name: "a global level is its value alone", path: DomainPath{"z1", "s1", "l1", "nv1"}, level: 3, want: "nv1"},
		{name: "missing coarse value keeps its place", path: DomainPath{"", "s1", "l1", ""}, level: 2, want: "/s1/l1"},
		{name: "no value at the level", path: DomainPath{"z1", "s1", "l1", ""}, level: 3, want: ""},
		{name: "negative level", path: DomainPath{"z1", "s1", "l1", "nv1"}, level: -1, want: ""},
		{name: "level beyond the list", path: DomainPath{"z1", "s1", "l1", "nv1", "x"}, level: 4, want: ""},
		{name: "path shorter than the list", path: DomainPath{"z1"}, level: 2, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, l.DomainID(tt.path, tt.level))
		})
	}
}

func TestLowestCommonLevel(t *testing.T) {
	l := DefaultLevels()
	tests := []struct {
		name string
		a, b map[string]string
		want int
	}{
		{
			name: "same NVLink domain",
			a:    node("z1", "s1", "l1", "nv1"),
			b:    node("z1", "s1", "l1", "nv1"),
			want: 3,
		},
		{
			name: "same leaf, different NVLink domain",
			a:    node("z1", "s1", "l1", "nv1"),
			b:    node("z1", "s1", "l1", "nv2"),
			want: 2,
		},
		{
			name: "same spine, different leaf",
			a:    node("z1", "s1", "l1", "nv1"),
			b:    node("z1", "s1", "l2", "nv2"),
			want: 1,
		},
		{
			name: "same zone, different spine",
			a:    node("z1", "s1", "l1", "nv1"),
			b:    node("z1", "s2", "l2", "nv2"),
			want: 0,
		},
		{
			name: "different zone",
			a:    node("z1", "s1", "l1", "nv1"),
			b:    node("z2", "s1", "l1", "nv2"),
			want: -1,
		},
		{
			// An NVL72 rack whose trays' NICs hang off two leaves.
			name: "same NVLink domain under different leaves",
			a:    node("z1", "s1", "l1", "rack1"),
			b:    node("z1", "s1", "l2", "rack1"),
			want: 3,
		},
		{
			name: "no labels on either",
			a:    node("", "", "", ""),
			b:    node("", "", "", ""),
			want: -1,
		},
		{
			name: "both lack the NVLink label",
			a:    node("z1", "s1", "l1", ""),
			b:    node("z1", "s1", "l1", ""),
			want: 2,
		},
		{
			name: "both lack the zone label",
			a:    node("", "s1", "l1", "nv1"),
			b:    node("", "s1", "l2", "nv2"),
			want: 1,
		},
		{
			name: "one lacks the leaf label",
			a:    node("z1", "s1", "l1", "nv1"),
			b:    node("z1", "s1", "", "nv2"),
			want: 1,
		},
		{
			// Two nodes of a rail-optimised fabric, for which the agent
			// publishes no leaf.
			name: "both lack the leaf label",
			a:    node("z1", "s1", "", "nv1"),
			b:    node("z1", "s1", "", "nv2"),
			want: 1,
		},
		{
			name: "one lacks the zone label",
			a:    node("z1", "s1", "l1", "nv1"),
			b:    node("", "s1", "l1", "nv2"),
			want: -1,
		},
		{
			// Leaf names such as "leaf-01" repeat under every spine.
			name: "same leaf name under different spines",
			a:    node("z1", "s1", "leaf-01", ""),
			b:    node("z1", "s2", "leaf-01", ""),
			want: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := l.PathOf(tt.a), l.PathOf(tt.b)
			got := l.LowestCommonLevel(a, b)
			require.Equal(t, tt.want, got)
			require.Equal(t, got, l.LowestCommonLevel(b, a), "must be symmetric")

			// The common level is exactly the finest level whose domain
			// IDs match, so callers may use either.
			for i := range l {
				idA, idB := l.DomainID(a, i), l.DomainID(b, i)
				shared := idA != "" && idA == idB
				switch {
				case i == got:
					require.True(t, shared, "level %d: domain IDs must match at the common level", i)
				case i > got:
					require.False(t, shared, "level %d: domain IDs must differ below the common level", i)
				}
			}
		})
	}
}

// Without the global flag a level matches only under equal coarser levels,
// as Kueue matches domains.
func TestLowestCommonLevelNotGlobal(t *testing.T) {
	l := DefaultLevels()
	l[3].Global = false
	a, b := l.PathOf(node("z1", "s1", "l1", "rack1")), l.PathOf(node("z1", "s1", "l2", "rack1"))
	require.Equal(t, 1, l.LowestCommonLevel(a, b))
	require.NotEqual(t, l.DomainID(a, 3), l.DomainID(b, 3))
	require.Equal(t, -1, l.LowestCommonLevel(l.PathOf(node("z1", "s1", "l1", "nv1")), l.PathOf(node("z2", "s1", "l1", "nv1"))))
}

func TestLowestCommonLevelShortPaths(t *testing.T) {
	l := DefaultLevels()
	require.Equal(t, 1, l.LowestCommonLevel(DomainPath{"z1", "s1"}, DomainPath{"z1", "s1", "l1"}))
	require.Equal(t, -1, l.LowestCommonLevel(nil, nil))
}

func TestClassify(t *testing.T) {
	l := DefaultLevels()
	tests := []struct {
		name           string
		a, b           map[string]string
		readyA, readyB bool
		want           PathClass
	}{
		{
			name: "same NVLink domain", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s1", "l1", "nv1"),
			readyA: true, readyB: true, want: LevelNVLinkDomain,
		},
		{
			name: "same NVLink domain ignores GPUDirect", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s1", "l1", "nv1"),
			readyA: false, readyB: false, want: LevelNVLinkDomain,
		},
		{
			name: "same leaf", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s1", "l1", "nv2"),
			readyA: true, readyB: true, want: LevelLeaf,
		},
		{
			name: "same spine", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s1", "l2", "nv2"),
			readyA: true, readyB: true, want: LevelSpine,
		},
		{
			name: "same zone", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s2", "l2", "nv2"),
			readyA: true, readyB: true, want: LevelZone,
		},
		{
			name: "different zone", a: node("z1", "s1", "l1", "nv1"), b: node("z2", "s1", "l1", "nv2"),
			readyA: true, readyB: true, want: PathNone,
		},
		{
			name: "same leaf without GPUDirect on the sender", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s1", "l1", "nv2"),
			readyA: false, readyB: true, want: PathHostBounce,
		},
		{
			name: "same spine without GPUDirect on the receiver", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s1", "l2", "nv2"),
			readyA: true, readyB: false, want: PathHostBounce,
		},
		{
			name: "same zone without GPUDirect on either end", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s2", "l2", "nv2"),
			readyA: false, readyB: false, want: PathHostBounce,
		},
		{
			name: "different zone without GPUDirect", a: node("z1", "s1", "l1", "nv1"), b: node("z2", "s1", "l1", "nv2"),
			readyA: false, readyB: false, want: PathNone,
		},
		{
			name: "same spine, both without a leaf", a: node("z1", "s1", "", "nv1"), b: node("z1", "s1", "", "nv2"),
			readyA: true, readyB: true, want: LevelSpine,
		},
		{
			name: "same spine, one without a leaf", a: node("z1", "s1", "l1", "nv1"), b: node("z1", "s1", "", "nv2"),
			readyA: true, readyB: true, want: LevelSpine,
		},
		{
			name: "same leaf, both unlabelled for NVLink, without GPUDirect", a: node("z1", "s1", "l1", ""), b: node("z1", "s1", "l1", ""),
			readyA: false, readyB: false, want: PathHostBounce,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := l.Classify(l.PathOf(tt.a), l.PathOf(tt.b), tt.readyA, tt.readyB)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestClassifyWithoutNVLinkLevel(t *testing.T) {
	l := Levels{
		{Name: LevelZone, Key: LabelZone, Bandwidth: 12.5e9},
		{Name: LevelLeaf, Key: LabelLeaf, Bandwidth: 50e9},
	}
	a := l.PathOf(node("z1", "", "l1", ""))
	require.Equal(t, PathClass(LevelLeaf), l.Classify(a, a, true, true))
	require.Equal(t, PathHostBounce, l.Classify(a, a, true, false))
}

func TestGPUDirectRDMAReady(t *testing.T) {
	require.True(t, GPUDirectRDMAReady(map[string]string{LabelGPUDirectRDMA: "true"}))
	require.False(t, GPUDirectRDMAReady(map[string]string{LabelGPUDirectRDMA: "false"}))
	require.False(t, GPUDirectRDMAReady(map[string]string{LabelGPUDirectRDMA: "True"}))
	require.False(t, GPUDirectRDMAReady(nil))
}

func BenchmarkLowestCommonLevel(b *testing.B) {
	l := DefaultLevels()
	x := l.PathOf(node("us-east-1a", "spine-07", "leaf-12", "nvl72-0031"))
	y := l.PathOf(node("us-east-1a", "spine-07", "leaf-12", "nvl72-0032"))
	b.ReportAllocs()
	for b.Loop() {
		if l.LowestCommonLevel(x, y) != 2 {
			b.Fatal("wrong common level")
		}
	}
}
