package bench

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// LabeledCPU reads a CPU profile as runtime/pprof writes it (a gzipped
// profile.proto) and returns the CPU time of its samples, all of them and
// those carrying the pprof label key=value, as set by pprof.Do and
// inherited by every goroutine started under it.
func LabeledCPU(profile []byte, key, value string) (labeled, total time.Duration, err error) {
	data := profile
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return 0, 0, fmt.Errorf("CPU profile: %w", err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return 0, 0, fmt.Errorf("CPU profile: %w", err)
		}
	}
	p, err := parseProfile(data)
	if err != nil {
		return 0, 0, fmt.Errorf("CPU profile: %w", err)
	}
	cpu := -1
	for i, t := range p.sampleTypes {
		if p.str(t.typ) == "cpu" && p.str(t.unit) == "nanoseconds" {
			cpu = i
		}
	}
	if cpu < 0 {
		return 0, 0, fmt.Errorf("CPU profile: no sample type cpu/nanoseconds")
	}
	for _, s := range p.samples {
		if cpu >= len(s.values) {
			return 0, 0, fmt.Errorf("CPU profile: a sample has %d values, want at least %d", len(s.values), cpu+1)
		}
		v := time.Duration(s.values[cpu])
		total += v
		for _, l := range s.labels {
			if p.str(l.key) == key && p.str(l.str) == value {
				labeled += v
				break
			}
		}
	}
	return labeled, total, nil
}

// CPUPoint is the process's CPU time at a moment.
type CPUPoint struct {
	Time time.Time
	CPU  time.Duration
}

// CPUSegment is one CPU profile of a process: when it started and ended,
// the process's CPU time then, and the CPU time of its samples, all of
// them and those carrying a label.
type CPUSegment struct {
	Start, End       time.Time
	StartCPU, EndCPU time.Duration
	Labeled, Sampled time.Duration
}

// LabeledCPUIn estimates the labeled CPU time of the process between from
// and to from back-to-back profile segments: for each segment, its labeled
// share of samples times the process CPU time of the part of the segment
// inside [from, to], whose ends are from, to and the segment's own. sampled
// is the sampled CPU time of the segments that overlap.
func LabeledCPUIn(segs []CPUSegment, from, to CPUPoint) (labeled, sampled time.Duration) {
	later := func(a, b CPUPoint) CPUPoint {
		if b.Time.After(a.Time) {
			return b
		}
		return a
	}
	earlier := func(a, b CPUPoint) CPUPoint {
		if b.Time.Before(a.Time) {
			return b
		}
		return a
	}
	for _, s := range segs {
		lo := later(CPUPoint{s.Start, s.StartCPU}, from)
		hi := earlier(CPUPoint{s.End, s.EndCPU}, to)
		if !hi.Time.After(lo.Time) || s.Sampled == 0 {
			continue
		}
		labeled += time.Duration(float64(hi.CPU-lo.CPU) * float64(s.Labeled) / float64(s.Sampled))
		sampled += s.Sampled
	}
	return labeled, sampled
}

// The few profile.proto messages LabeledCPU needs
// (github.com/google/pprof/proto/profile.proto).
type rawProfile struct {
	sampleTypes []valueType
	samples     []rawSample
	strings     []string
}

type valueType struct{ typ, unit int64 }

type rawSample struct {
	values []int64
	labels []rawLabel
}

type rawLabel struct{ key, str int64 }

func (p *rawProfile) str(i int64) string {
	if i < 0 || int(i) >= len(p.strings) {
		return ""
	}
	return p.strings[i]
}

const (
	profileSampleType  = 1
	profileSample      = 2
	profileStringTable = 6
	sampleValue        = 2
	sampleLabel        = 3
	valueTypeType      = 1
	valueTypeUnit      = 2
	labelKey           = 1
	labelStr           = 2
)

// fields calls fn for every field of one message; fn gets the raw bytes of
// length-delimited fields and the value of varints.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var raw []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, raw); err != nil {
			return err
		}
	}
	return nil
}

func parseProfile(b []byte) (*rawProfile, error) {
	p := &rawProfile{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case profileSampleType:
			var vt valueType
			err := fields(raw, func(num protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch num {
				case valueTypeType:
					vt.typ = int64(v)
				case valueTypeUnit:
					vt.unit = int64(v)
				}
				return nil
			})
			p.sampleTypes = append(p.sampleTypes, vt)
			return err
		case profileSample:
			s, err := parseSample(raw)
			p.samples = append(p.samples, s)
			return err
		case profileStringTable:
			p.strings = append(p.strings, string(raw))
		}
		return nil
	})
	return p, err
}

func parseSample(b []byte) (rawSample, error) {
	var s rawSample
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case sampleValue:
			if typ == protowire.VarintType {
				s.values = append(s.values, int64(v))
				return nil
			}
			for len(raw) > 0 { // packed
				x, n := protowire.ConsumeVarint(raw)
				if n < 0 {
					return protowire.ParseError(n)
				}
				s.values = append(s.values, int64(x))
				raw = raw[n:]
			}
		case sampleLabel:
			var l rawLabel
			err := fields(raw, func(num protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch num {
				case labelKey:
					l.key = int64(v)
				case labelStr:
					l.str = int64(v)
				}
				return nil
			})
			s.labels = append(s.labels, l)
			return err
		}
		return nil
	})
	return s, err
}
