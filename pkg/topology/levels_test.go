package topology

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLevelsValidate(t *testing.T) {
	// modified returns the default levels with one change applied.
	modified := func(change func(Levels)) Levels {
		l := DefaultLevels()
		change(l)
		return l
	}
	tests := []struct {
		name    string
		levels  Levels
		wantErr []string // substrings the error must contain; nil means valid
	}{
		{name: "default", levels: DefaultLevels()},
		{
			name:   "single level",
			levels: Levels{{Name: "leaf", Key: LabelLeaf, Bandwidth: 50e9}},
		},
		{
			name: "equal bandwidths",
			levels: Levels{
				{Name: "zone", Key: LabelZone, Bandwidth: 12.5e9},
				{Name: "block", Key: "example.com/block", Bandwidth: 12.5e9},
			},
		},
		{name: "nil", levels: nil, wantErr: []string{"at least one level"}},
		{name: "empty", levels: Levels{}, wantErr: []string{"at least one level"}},
		{
			name:    "empty name",
			levels:  modified(func(l Levels) { l[1].Name = "" }),
			wantErr: []string{"levels[1]: name is required"},
		},
		{
			name:    "reserved name none",
			levels:  modified(func(l Levels) { l[0].Name = "none" }),
			wantErr: []string{"levels[0] (none)", `name "none" is reserved`},
		},
		{
			name:    "reserved name host-bounce",
			levels:  modified(func(l Levels) { l[2].Name = "host-bounce" }),
			wantErr: []string{"levels[2] (host-bounce)", "reserved"},
		},
		{
			name:    "duplicate name",
			levels:  modified(func(l Levels) { l[2].Name = "spine" }),
			wantErr: []string{"levels[2] (spine): name duplicates levels[1] (spine)"},
		},
		{
			name:    "empty key",
			levels:  modified(func(l Levels) { l[3].Key = "" }),
			wantErr: []string{"levels[3] (nvlink-domain): key is required"},
		},
		{
			name:    "key with a space",
			levels:  modified(func(l Levels) { l[2].Key = "tandem.dev/my leaf" }),
			wantErr: []string{"levels[2] (leaf)", `key "tandem.dev/my leaf" is not a valid label key`},
		},
		{
			name:    "key with two slashes",
			levels:  modified(func(l Levels) { l[2].Key = "a/b/c" }),
			wantErr: []string{"levels[2] (leaf)", `key "a/b/c" is not a valid label key`},
		},
		{
			name:    "duplicate key",
			levels:  modified(func(l Levels) { l[3].Key = LabelLeaf }),
			wantErr: []string{`levels[3] (nvlink-domain): key "tandem.dev/leaf" duplicates levels[2] (leaf)`},
		},
		{
			name:    "zero bandwidth",
			levels:  modified(func(l Levels) { l[0].Bandwidth = 0 }),
			wantErr: []string{"levels[0] (zone): bandwidth 0 must be a positive, finite number"},
		},
		{
			name:    "negative bandwidth",
			levels:  modified(func(l Levels) { l[0].Bandwidth = -1 }),
			wantErr: []string{"levels[0] (zone): bandwidth -1 must be"},
		},
		{
			name:    "NaN bandwidth",
			levels:  modified(func(l Levels) { l[1].Bandwidth = math.NaN() }),
			wantErr: []string{"levels[1] (spine): bandwidth NaN must be"},
		},
		{
			name:    "infinite bandwidth",
			levels:  modified(func(l Levels) { l[3].Bandwidth = math.Inf(1) }),
			wantErr: []string{"levels[3] (nvlink-domain): bandwidth +Inf must be"},
		},
		{
			name:    "finer level slower",
			levels:  modified(func(l Levels) { l[2].Bandwidth = 1e9 }),
			wantErr: []string{"levels[2] (leaf): bandwidth 1e+09 is lower than levels[1] (spine) 2.5e+10; a finer level cannot be slower"},
		},
		{
			name: "every problem is reported",
			levels: modified(func(l Levels) {
				l[0].Name = ""
				l[3].Key = "bad key"
			}),
			wantErr: []string{"levels[0]: name is required", "levels[3] (nvlink-domain): key \"bad key\""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.levels.Validate()
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

func TestLevelsIndex(t *testing.T) {
	l := DefaultLevels()
	tests := []struct {
		name   string
		want   int
		wantOK bool
	}{
		{name: LevelZone, want: 0, wantOK: true},
		{name: LevelLeaf, want: 2, wantOK: true},
		{name: LevelNVLinkDomain, want: 3, wantOK: true},
		{name: "rack", want: -1, wantOK: false},
		{name: "", want: -1, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := l.Index(tt.name)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}
}
