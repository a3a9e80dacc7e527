package topology

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPresetsValidate(t *testing.T) {
	names := PresetNames()
	require.True(t, slices.IsSorted(names))
	require.Subset(t, names, []string{PresetTandem, PresetGKE, PresetEKS, PresetTopograph, PresetGFD})
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			levels, err := PresetLevels(name)
			require.NoError(t, err)
			require.NoError(t, levels.Validate())

			m := DefaultCostModel()
			m.Levels = levels
			require.NoError(t, m.Validate())

			// Classify treats the NVLink level specially, so every preset
			// must have one, and it must be the finest.
			nvlink, ok := levels.Index(LevelNVLinkDomain)
			require.True(t, ok)
			require.Equal(t, len(levels)-1, nvlink)
		})
	}
}

func TestPresetTandemIsDefault(t *testing.T) {
	levels, err := PresetLevels(PresetTandem)
	require.NoError(t, err)
	require.Equal(t, DefaultLevels(), levels)
}

func TestPresetLevelsAreIndependentCopies(t *testing.T) {
	first, err := PresetLevels(PresetGKE)
	require.NoError(t, err)
	first[0].Bandwidth = 1

	second, err := PresetLevels(PresetGKE)
	require.NoError(t, err)
	require.Equal(t, 12.5e9, second[0].Bandwidth)
}

func TestPresetLevelsUnknown(t *testing.T) {
	levels, err := PresetLevels("aks")
	require.Nil(t, levels)
	require.ErrorContains(t, err, `unknown level preset "aks"`)
	require.ErrorContains(t, err, "coreweave, eks, gfd, gke, nebius, oci, tandem, topograph, topograph-v0")
}
