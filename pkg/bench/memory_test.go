package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

const procStatus = `Name:	scheduler
Umask:	0022
State:	S (sleeping)
Pid:	4242
VmPeak:	 2345678 kB
VmSize:	 2345600 kB
VmHWM:	  612348 kB
VmRSS:	  401220 kB
RssAnon:	  380000 kB
Threads:	23
`

func TestParseProcStatusReadsRSSAndPeak(t *testing.T) {
	m, err := ParseProcStatus([]byte(procStatus))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 401220*1024 || m.PeakRSS != 612348*1024 {
		t.Errorf("RSS %d, peak %d; want %d and %d", m.RSS, m.PeakRSS, 401220*1024, 612348*1024)
	}
}

func TestParseProcStatusErrorsNameTheField(t *testing.T) {
	for name, tc := range map[string]struct{ text, want string }{
		"kernel thread": {"Name:\tkthreadd\nState:\tS (sleeping)\n", "no VmRSS"},
		"unit":          {"VmHWM:\t10 MB\nVmRSS:\t5 kB\n", `VmHWM: "10 MB" is not a size in kB`},
		"number":        {"VmHWM:\t10 kB\nVmRSS:\tx kB\n", "VmRSS"},
	} {
		_, err := ParseProcStatus([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", name, err, tc.want)
		}
	}
}

func TestReadProcMemoryOfThisProcess(t *testing.T) {
	m, err := ReadProcMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.PeakRSS < m.RSS {
		t.Errorf("RSS %d, peak %d: want a resident set no larger than its peak", m.RSS, m.PeakRSS)
	}
}

func TestParseProcStatCountsUserAndSystemTime(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (sched (x) y) S 1 4242 4242 0 -1 4194560 9055 0 0 0 1234 566 0 0 20 0 23 0 8123 2345600000 100305 18446744073709551615\n"
	got, err := ParseProcStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 18 * time.Second; got != want {
		t.Errorf("CPU %s, want %s (1234 + 566 ticks)", got, want)
	}
	if _, err := ParseProcStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("a truncated stat line parsed")
	}
}

const exposition = `# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.234567e+08
# HELP scheduler_scheduling_attempt_duration_seconds [STABLE] Scheduling attempt latency in seconds
# TYPE scheduler_scheduling_attempt_duration_seconds histogram
scheduler_scheduling_attempt_duration_seconds_bucket{profile="tandem-scheduler",result="scheduled",le="0.001"} 2
scheduler_scheduling_attempt_duration_seconds_bucket{profile="tandem-scheduler",result="scheduled",le="0.002"} 5
scheduler_scheduling_attempt_duration_seconds_bucket{profile="tandem-scheduler",result="scheduled",le="+Inf"} 6
scheduler_scheduling_attempt_duration_seconds_sum{profile="tandem-scheduler",result="scheduled"} 0.05
scheduler_scheduling_attempt_duration_seconds_count{profile="tandem-scheduler",result="scheduled"} 6
scheduler_scheduling_attempt_duration_seconds_bucket{profile="default-scheduler",result="scheduled",le="0.001"} 9
scheduler_scheduling_attempt_duration_seconds_bucket{profile="default-scheduler",result="scheduled",le="0.002"} 9
scheduler_scheduling_attempt_duration_seconds_bucket{profile="default-scheduler",result="scheduled",le="+Inf"} 9
scheduler_scheduling_attempt_duration_seconds_sum{profile="default-scheduler",result="scheduled"} 0.005
scheduler_scheduling_attempt_duration_seconds_count{profile="default-scheduler",result="scheduled"} 9
`

func TestMetricsFromExposition(t *testing.T) {
	families, err := ParseMetrics([]byte(exposition))
	if err != nil {
		t.Fatal(err)
	}
	heap, err := GaugeValue(families, "go_memstats_heap_inuse_bytes")
	if err != nil || heap != 123456700 {
		t.Errorf("heap %v, %v; want 123456700", heap, err)
	}
	if _, err := GaugeValue(families, "process_resident_memory_bytes"); err == nil || !strings.Contains(err.Error(), "process_resident_memory_bytes") {
		t.Errorf("a missing gauge: error %v, want it named", err)
	}
	h, found, err := HistogramOf(families, "scheduler_scheduling_attempt_duration_seconds", map[string]string{"profile": "tandem-scheduler", "result": "scheduled"})
	if err != nil || !found {
		t.Fatalf("histogram found %v, %v", found, err)
	}
	// Only the tandem profile's series; the +Inf bucket is the count.
	if h.Count != 6 || len(h.Buckets) != 2 || h.Buckets[1].Count != 5 {
		t.Errorf("histogram %+v, want 6 attempts with 5 in the 2 ms bucket and no +Inf bucket", h)
	}
	if _, found, _ := HistogramOf(families, "scheduler_scheduling_attempt_duration_seconds", map[string]string{"profile": "tandem-scheduler", "result": "error"}); found {
		t.Error("found a histogram for a result with no series")
	}
}
