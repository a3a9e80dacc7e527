package topology

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestKVCacheShape(t *testing.T) {
	s := Llama3_70B_BF16()
	require.NoError(t, s.Validate())
	require.Equal(t, int64(327_680), s.BytesPerToken())
	require.Equal(t, int64(320<<10), s.BytesPerToken())
	require.Equal(t, 1_342_177_280.0, s.KVBytes(4096))
	require.Zero(t, s.KVBytes(0))
}

func TestKVCacheShapeValidate(t *testing.T) {
	err := KVCacheShape{Layers: 80, KVHeads: 0, HeadDim: 128, BytesPerElement: -2}.Validate()
	require.ErrorContains(t, err, "kvHeads 0 must be positive")
	require.ErrorContains(t, err, "bytesPerElement -2 must be positive")
	require.NotContains(t, err.Error(), "layers")
}

func TestTransferTimeLlama3_70BPrompt(t *testing.T) {
	m := DefaultCostModel()
	require.NoError(t, m.Validate())
	bytes := Llama3_70B_BF16().KVBytes(4096) // ~1.34 GB
	tests := []struct {
		class PathClass
		want  time.Duration
	}{
		{class: LevelNVLinkDomain, want: 2_983 * time.Microsecond},
		{class: LevelLeaf, want: 26_844 * time.Microsecond},
		{class: LevelSpine, want: 53_687 * time.Microsecond},
		{class: LevelZone, want: 107_374 * time.Microsecond},
		{class: PathHostBounce, want: 268_435 * time.Microsecond},
		{class: PathNone, want: 1_073_742 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(string(tt.class), func(t *testing.T) {
			got := m.TransferTime(bytes, tt.class)
			require.InEpsilon(t, tt.want.Seconds(), got.Seconds(), 0.01, "got %v", got)
		})
	}
}

func TestBandwidth(t *testing.T) {
	m := DefaultCostModel()
	tests := []struct {
		class PathClass
		want  float64
	}{
		{class: LevelNVLinkDomain, want: 450e9},
		{class: LevelLeaf, want: 50e9},
		{class: LevelSpine, want: 25e9},
		{class: LevelZone, want: 12.5e9},
		{class: PathHostBounce, want: 5e9},
		{class: PathNone, want: 1.25e9},
		{class: "rack", want: 1.25e9},
		{class: "", want: 1.25e9},
	}
	for _, tt := range tests {
		t.Run(string(tt.class), func(t *testing.T) {
			require.Equal(t, tt.want, m.Bandwidth(tt.class))
		})
	}
}

func TestTransferTimeEdges(t *testing.T) {
	m := DefaultCostModel()
	require.Zero(t, m.TransferTime(0, LevelLeaf))
	require.Zero(t, m.TransferTime(-1, LevelLeaf))
	require.Zero(t, m.TransferTime(math.NaN(), LevelLeaf))
	require.Equal(t, time.Duration(math.MaxInt64), m.TransferTime(1e30, PathNone))
	require.Equal(t, time.Duration(math.MaxInt64), CostModel{}.TransferTime(1, LevelLeaf),
		"a zero-bandwidth model must not price a transfer as free")
}

func TestCostModelValidate(t *testing.T) {
	modified := func(change func(*CostModel)) CostModel {
		m := DefaultCostModel()
		change(&m)
		return m
	}
	tests := []struct {
		name    string
		model   CostModel
		wantErr []string
	}{
		{name: "default", model: DefaultCostModel()},
		{
			name:    "invalid levels",
			model:   modified(func(m *CostModel) { m.Levels[2].Bandwidth = 1e9 }),
			wantErr: []string{"levels[2] (leaf): bandwidth 1e+09 is lower than levels[1] (spine)"},
		},
		{
			name:    "no levels",
			model:   modified(func(m *CostModel) { m.Levels = nil }),
			wantErr: []string{"at least one level"},
		},
		{
			name:    "zero cross bandwidth",
			model:   modified(func(m *CostModel) { m.CrossBandwidth = 0 }),
			wantErr: []string{"crossBandwidth 0 must be a positive, finite number"},
		},
		{
			name:    "infinite host-bounce bandwidth",
			model:   modified(func(m *CostModel) { m.HostBounceBandwidth = math.Inf(1) }),
			wantErr: []string{"hostBounceBandwidth +Inf must be a positive, finite number"},
		},
		{
			name:    "NaN host-bounce bandwidth",
			model:   modified(func(m *CostModel) { m.HostBounceBandwidth = math.NaN() }),
			wantErr: []string{"hostBounceBandwidth NaN must be"},
		},
		{
			name:    "cross above coarsest level",
			model:   modified(func(m *CostModel) { m.CrossBandwidth, m.HostBounceBandwidth = 20e9, 20e9 }),
			wantErr: []string{"crossBandwidth 2e+10 is above levels[0] (zone) bandwidth 1.25e+10"},
		},
		{
			name:    "host bounce above coarsest level",
			model:   modified(func(m *CostModel) { m.HostBounceBandwidth = 20e9 }),
			wantErr: []string{"hostBounceBandwidth 2e+10 is above levels[0] (zone) bandwidth 1.25e+10"},
		},
		{
			name:    "cross above host bounce",
			model:   modified(func(m *CostModel) { m.CrossBandwidth = 6e9 }),
			wantErr: []string{"crossBandwidth 6e+09 is above hostBounceBandwidth 5e+09"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.model.Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}
