package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ProcessMemory is a process's memory as Linux reports it in
// /proc/<pid>/status, and the Go heap in use as the process's own metrics
// report it.
type ProcessMemory struct {
	// RSS is VmRSS: the resident set when sampled.
	RSS uint64 `json:"rssBytes"`
	// PeakRSS is VmHWM: the largest resident set since the process started.
	PeakRSS uint64 `json:"peakRSSBytes"`
	// HeapInuse is go_memstats_heap_inuse_bytes from the process's /metrics
	// when sampled; 0 when it was not read (HeapNotRead says why).
	HeapInuse   uint64 `json:"heapInuseBytes,omitempty"`
	HeapNotRead string `json:"heapNotRead,omitempty"`
}

// ParseProcStatus reads VmRSS and VmHWM from the text of /proc/<pid>/status
// (lines such as "VmRSS:	  123456 kB").
func ParseProcStatus(data []byte) (ProcessMemory, error) {
	var m ProcessMemory
	var haveRSS, haveHWM bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			return m, fmt.Errorf("%s: %q is not a size in kB", key, strings.TrimSpace(value))
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s: %w", key, err)
		}
		switch key {
		case "VmRSS":
			m.RSS, haveRSS = kb*1024, true
		case "VmHWM":
			m.PeakRSS, haveHWM = kb*1024, true
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !haveRSS || !haveHWM {
		return m, fmt.Errorf("no VmRSS or no VmHWM line (a kernel thread, or a process that has exited)")
	}
	return m, nil
}

// ReadProcMemory reads the memory of process pid from /proc.
func ReadProcMemory(pid int) (ProcessMemory, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return ProcessMemory{}, err
	}
	m, err := ParseProcStatus(data)
	if err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times; Linux
// reports them in hundredths of a second on every architecture Go supports.
const clockTicks = 100

// ParseProcStat reads the user and system CPU time from the text of
// /proc/<pid>/stat.
func ParseProcStat(data []byte) (time.Duration, error) {
	// The command name, field 2, is in parentheses and may hold spaces:
	// the fields after it are counted from its closing parenthesis.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("no command name in %q", s)
	}
	fields := strings.Fields(s[end+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	var total uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU time %q: %w", f, err)
		}
		total += n
	}
	return time.Duration(total) * time.Second / clockTicks, nil
}

// ReadProcCPU reads the user and system CPU time process pid has used.
func ReadProcCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseProcStat(data)
}

// ParseMetrics parses Prometheus text exposition, as a component's /metrics
// serves it, into metric families by name.
func ParseMetrics(data []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(data))
}

// GaugeValue is the value of the unlabelled gauge (or untyped metric) name
// in families.
func GaugeValue(families map[string]*dto.MetricFamily, name string) (float64, error) {
	f, ok := families[name]
	if !ok {
		return 0, fmt.Errorf("no metric %s", name)
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != 0 {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), nil
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("metric %s has no unlabelled gauge value", name)
}

// HistogramOf sums the histograms of metric name in families whose labels
// include every one of labels.
func HistogramOf(families map[string]*dto.MetricFamily, name string, labels map[string]string) (Histogram, bool, error) {
	var sum Histogram
	f, ok := families[name]
	if !ok {
		return sum, false, nil
	}
	found := false
	for _, m := range f.GetMetric() {
		if m.Histogram == nil || !hasLabels(m, labels) {
			continue
		}
		h := m.GetHistogram()
		one := Histogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
		for _, b := range h.GetBucket() {
			// The text form lists the +Inf bucket, which is the count;
			// an in-process gatherer leaves it implicit, as Histogram does.
			if math.IsInf(b.GetUpperBound(), 1) {
				continue
			}
			one.Buckets = append(one.Buckets, Bucket{UpperBound: b.GetUpperBound(), Count: b.GetCumulativeCount()})
		}
		var err error
		if sum, err = sum.Add(one); err != nil {
			return sum, true, fmt.Errorf("%s: %w", name, err)
		}
		found = true
	}
	return sum, found, nil
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}
