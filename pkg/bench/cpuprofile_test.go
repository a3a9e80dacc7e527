package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// encodeProfile writes the parts of profile.proto LabeledCPU reads.
func encodeProfile(strs []string, types [][2]int64, samples []rawSample) []byte {
	var b []byte
	for _, t := range types {
		var vt []byte
		vt = protowire.AppendTag(vt, valueTypeType, protowire.VarintType)
		vt = protowire.AppendVarint(vt, uint64(t[0]))
		vt = protowire.AppendTag(vt, valueTypeUnit, protowire.VarintType)
		vt = protowire.AppendVarint(vt, uint64(t[1]))
		b = protowire.AppendTag(b, profileSampleType, protowire.BytesType)
		b = protowire.AppendBytes(b, vt)
	}
	for _, s := range samples {
		var sb, packed []byte
		for _, v := range s.values {
			packed = protowire.AppendVarint(packed, uint64(v))
		}
		sb = protowire.AppendTag(sb, sampleValue, protowire.BytesType)
		sb = protowire.AppendBytes(sb, packed)
		for _, l := range s.labels {
			var lb []byte
			lb = protowire.AppendTag(lb, labelKey, protowire.VarintType)
			lb = protowire.AppendVarint(lb, uint64(l.key))
			lb = protowire.AppendTag(lb, labelStr, protowire.VarintType)
			lb = protowire.AppendVarint(lb, uint64(l.str))
			sb = protowire.AppendTag(sb, sampleLabel, protowire.BytesType)
			sb = protowire.AppendBytes(sb, lb)
		}
		b = protowire.AppendTag(b, profileSample, protowire.BytesType)
		b = protowire.AppendBytes(b, sb)
	}
	for _, s := range strs {
		b = protowire.AppendTag(b, profileStringTable, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return z.Bytes()
}

func TestLabeledCPU(t *testing.T) {
	strs := []string{"", "samples", "count", "cpu", "nanoseconds", "component", "scheduler", "other", "request"}
	ms := int64(time.Millisecond)
	profile := encodeProfile(strs, [][2]int64{{1, 2}, {3, 4}}, []rawSample{
		{values: []int64{1, 10 * ms}, labels: []rawLabel{{key: 8, str: 7}, {key: 5, str: 6}}},
		{values: []int64{2, 20 * ms}, labels: []rawLabel{{key: 5, str: 7}}},
		{values: []int64{1, 5 * ms}},
	})
	labeled, total, err := LabeledCPU(profile, "component", "scheduler")
	require.NoError(t, err)
	require.Equal(t, 10*time.Millisecond, labeled)
	require.Equal(t, 35*time.Millisecond, total)

	_, _, err = LabeledCPU(encodeProfile(strs, [][2]int64{{1, 2}}, nil), "component", "scheduler")
	require.ErrorContains(t, err, "no sample type cpu/nanoseconds")
	_, _, err = LabeledCPU([]byte{0x1f, 0x8b, 0, 1}, "component", "scheduler")
	require.ErrorContains(t, err, "CPU profile")
}

func TestLabeledCPUOfARealProfile(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, pprof.StartCPUProfile(&buf))
	// Burn 300 ms of this process's CPU time under the label: a profile at
	// 100 Hz takes some 30 samples of it.
	pprof.Do(context.Background(), pprof.Labels("component", "scheduler"), func(context.Context) {
		done := make(chan struct{})
		go func() { // inherits the label
			defer close(done)
			start := processCPU(t)
			x := 0
			for processCPU(t)-start < 300*time.Millisecond {
				for i := 0; i < 100000; i++ {
					x += i ^ x
				}
			}
			_ = x
		}()
		<-done
	})
	pprof.StopCPUProfile()
	labeled, total, err := LabeledCPU(buf.Bytes(), "component", "scheduler")
	require.NoError(t, err)
	require.Greater(t, labeled, time.Duration(0))
	require.LessOrEqual(t, labeled, total)
}

func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestLabeledCPUIn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	segs := []CPUSegment{
		// [0, 1000 ms): the process used 1.2 s of CPU, a quarter of it labeled.
		{Start: at(0), End: at(1000), StartCPU: 0, EndCPU: ms(1200), Labeled: ms(300), Sampled: ms(1200)},
		// [1000, 2000 ms): 1.6 s of CPU, half labeled.
		{Start: at(1000), End: at(2000), StartCPU: ms(1200), EndCPU: ms(2800), Labeled: ms(800), Sampled: ms(1600)},
		// [2000, 3000 ms): after the window.
		{Start: at(2000), End: at(3000), StartCPU: ms(2800), EndCPU: ms(3000), Labeled: ms(200), Sampled: ms(200)},
	}
	// The window runs from 500 ms (CPU 0.5 s) to 1500 ms (CPU 2.0 s):
	// 0.7 s of it in the first segment, 0.8 s in the second.
	labeled, sampled := LabeledCPUIn(segs, CPUPoint{at(500), ms(500)}, CPUPoint{at(1500), ms(2000)})
	require.Equal(t, ms(700)/4+ms(800)/2, labeled)
	require.Equal(t, ms(2800), sampled)
	// A window inside one segment.
	labeled, _ = LabeledCPUIn(segs, CPUPoint{at(1200), ms(1500)}, CPUPoint{at(1300), ms(1700)})
	require.Equal(t, ms(100), labeled)
	// A window before every segment.
	labeled, sampled = LabeledCPUIn(segs, CPUPoint{at(-500), 0}, CPUPoint{at(-100), 0})
	require.Zero(t, labeled)
	require.Zero(t, sampled)
}
