package topology

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Bandwidths, in bytes per second, for the path classes that are not levels.
const (
	// DefaultCrossBandwidth is what a stream gets between zones.
	DefaultCrossBandwidth = 1.25e9
	// DefaultHostBounceBandwidth is what a stream gets when it is staged
	// through host memory because GPUDirect RDMA is broken: a tenth of one
	// 400G NIC.
	DefaultHostBounceBandwidth = 5e9
)

// CostModel prices moving a KV cache along a path class.
type CostModel struct {
	// Levels are the hierarchy whose level names are path classes.
	Levels Levels
	// CrossBandwidth is the bandwidth of PathNone, pairs that share no level.
	CrossBandwidth float64
	// HostBounceBandwidth is the bandwidth of PathHostBounce.
	HostBounceBandwidth float64
}

// DefaultCostModel returns the model for DefaultLevels.
func DefaultCostModel() CostModel {
	return CostModel{
		Levels:              DefaultLevels(),
		CrossBandwidth:      DefaultCrossBandwidth,
		HostBounceBandwidth: DefaultHostBounceBandwidth,
	}
}

// Validate reports every problem with the model. Beyond valid levels it
// requires PathNone <= PathHostBounce <= the coarsest level, so that a worse
// path can never be priced as faster than a better one.
func (m CostModel) Validate() error {
	var errs []error
	if err := m.Levels.Validate(); err != nil {
		errs = append(errs, err)
	}
	crossOK := validBandwidth(m.CrossBandwidth)
	if !crossOK {
		errs = append(errs, fmt.Errorf("crossBandwidth %g must be a positive, finite number of bytes per second", m.CrossBandwidth))
	}
	bounceOK := validBandwidth(m.HostBounceBandwidth)
	if !bounceOK {
		errs = append(errs, fmt.Errorf("hostBounceBandwidth %g must be a positive, finite number of bytes per second", m.HostBounceBandwidth))
	}
	if crossOK && bounceOK && m.CrossBandwidth > m.HostBounceBandwidth {
		errs = append(errs, fmt.Errorf("crossBandwidth %g is above hostBounceBandwidth %g; a pair sharing no level cannot be faster than one sharing a level",
			m.CrossBandwidth, m.HostBounceBandwidth))
	}
	if len(m.Levels) > 0 && validBandwidth(m.Levels[0].Bandwidth) {
		coarsest := m.Levels[0].Bandwidth
		if crossOK && m.CrossBandwidth > coarsest {
			errs = append(errs, fmt.Errorf("crossBandwidth %g is above %s bandwidth %g; a pair sharing no level cannot be faster than one sharing the coarsest",
				m.CrossBandwidth, m.Levels.describe(0), coarsest))
		}
		if bounceOK && m.HostBounceBandwidth > coarsest {
			// Host bounce applies to pairs sharing any level below NVLink,
			// the coarsest included, and staging through host memory only
			// adds to that path's cost.
			errs = append(errs, fmt.Errorf("hostBounceBandwidth %g is above %s bandwidth %g; staging through host memory cannot be faster than the network path",
				m.HostBounceBandwidth, m.Levels.describe(0), coarsest))
		}
	}
	return errors.Join(errs...)
}

// Bandwidth returns the bytes per second the model assumes for c. A class the
// model does not know, such as one computed with a different level list, is
// priced as PathNone: a mismatch may make a placement look worse than it is,
// never better.
func (m CostModel) Bandwidth(c PathClass) float64 {
	switch c {
	case PathNone:
		return m.CrossBandwidth
	case PathHostBounce:
		return m.HostBounceBandwidth
	}
	if i, ok := m.Levels.Index(string(c)); ok {
		return m.Levels[i].Bandwidth
	}
	return m.CrossBandwidth
}

// TransferTime returns how long moving bytes along c takes. A transfer that
// would overflow time.Duration, including one over a zero bandwidth from an
// unvalidated model, is reported as the longest representable duration.
func (m CostModel) TransferTime(bytes float64, c PathClass) time.Duration {
	seconds := bytes / m.Bandwidth(c)
	if !(seconds > 0) { // also catches NaN
		return 0
	}
	nanos := seconds * float64(time.Second)
	if nanos >= math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(nanos)
}

// KVCacheShape is the part of a model's architecture that sets the size of
// its KV cache.
type KVCacheShape struct {
	Layers int
	// KVHeads is the number of key/value heads, which grouped-query attention
	// makes smaller than the number of query heads.
	KVHeads         int
	HeadDim         int
	BytesPerElement int
}

// Llama3_70B_BF16 is Llama 3 70B with a BF16 KV cache: 80 layers, 8 KV heads
// of dimension 128, 320 KiB per token.
func Llama3_70B_BF16() KVCacheShape {
	return KVCacheShape{Layers: 80, KVHeads: 8, HeadDim: 128, BytesPerElement: 2}
}

// BytesPerToken is the KV cache one token occupies: a key and a value vector
// per KV head per layer.
func (s KVCacheShape) BytesPerToken() int64 {
	return 2 * int64(s.Layers) * int64(s.KVHeads) * int64(s.HeadDim) * int64(s.BytesPerElement)
}

// KVBytes is the KV cache a prompt of tokens occupies.
func (s KVCacheShape) KVBytes(tokens int) float64 {
	return float64(tokens) * float64(s.BytesPerToken())
}

// Validate reports every field that is not positive.
func (s KVCacheShape) Validate() error {
	var errs []error
	for _, f := range []struct {
		name  string
		value int
	}{
		{"layers", s.Layers},
		{"kvHeads", s.KVHeads},
		{"headDim", s.HeadDim},
		{"bytesPerElement", s.BytesPerElement},
	} {
		if f.value <= 0 {
			errs = append(errs, fmt.Errorf("%s %d must be positive", f.name, f.value))
		}
	}
	return errors.Join(errs...)
}
