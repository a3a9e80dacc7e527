package bench

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Bucket is one cumulative histogram bucket, as Prometheus exposes it: the
// number of observations at or below UpperBound.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      uint64  `json:"count"`
}

// Histogram is a cumulative histogram of seconds. The scheduler's metrics are
// process-wide, so a run's histogram is the difference of two snapshots.
type Histogram struct {
	Buckets []Bucket `json:"buckets"`
	Count   uint64   `json:"count"`
	Sum     float64  `json:"sum"`
}

// Add merges o into h, bucket by bucket; the bucket bounds must match.
func (h Histogram) Add(o Histogram) (Histogram, error) {
	if len(h.Buckets) == 0 && h.Count == 0 {
		return o.clone(), nil
	}
	if len(o.Buckets) == 0 && o.Count == 0 {
		return h.clone(), nil
	}
	if err := sameBounds(h, o); err != nil {
		return Histogram{}, err
	}
	out := h.clone()
	for i := range out.Buckets {
		out.Buckets[i].Count += o.Buckets[i].Count
	}
	out.Count += o.Count
	out.Sum += o.Sum
	return out, nil
}

// Sub returns the observations made between snapshot before and h.
func (h Histogram) Sub(before Histogram) (Histogram, error) {
	if len(before.Buckets) == 0 && before.Count == 0 {
		return h.clone(), nil
	}
	if err := sameBounds(h, before); err != nil {
		return Histogram{}, err
	}
	out := h.clone()
	for i := range out.Buckets {
		if before.Buckets[i].Count > out.Buckets[i].Count {
			return Histogram{}, fmt.Errorf("bucket le=%g went down from %d to %d: the histogram was reset", out.Buckets[i].UpperBound, before.Buckets[i].Count, out.Buckets[i].Count)
		}
		out.Buckets[i].Count -= before.Buckets[i].Count
	}
	if before.Count > out.Count {
		return Histogram{}, fmt.Errorf("count went down from %d to %d: the histogram was reset", before.Count, out.Count)
	}
	out.Count -= before.Count
	out.Sum -= before.Sum
	return out, nil
}

func sameBounds(a, b Histogram) error {
	if len(a.Buckets) != len(b.Buckets) {
		return fmt.Errorf("histograms have %d and %d buckets", len(a.Buckets), len(b.Buckets))
	}
	for i := range a.Buckets {
		if a.Buckets[i].UpperBound != b.Buckets[i].UpperBound {
			return fmt.Errorf("bucket %d bounds differ: %g and %g", i, a.Buckets[i].UpperBound, b.Buckets[i].UpperBound)
		}
	}
	return nil
}

func (h Histogram) clone() Histogram {
	h.Buckets = append([]Bucket(nil), h.Buckets...)
	return h
}

// Quantile estimates the q-quantile (0 <= q <= 1) the way Prometheus's
// histogram_quantile does: find the bucket the rank falls in and interpolate
// linearly inside it, from 0 for the first bucket. A rank beyond the last
// finite bucket returns that bucket's bound. It returns NaN for an empty
// histogram.
func (h Histogram) Quantile(q float64) float64 {
	buckets := append([]Bucket(nil), h.Buckets...)
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].UpperBound < buckets[j].UpperBound })
	total := h.Count
	if n := len(buckets); n > 0 && !math.IsInf(buckets[n-1].UpperBound, 1) {
		// Prometheus exposes +Inf as the count, not as a bucket.
		buckets = append(buckets, Bucket{UpperBound: math.Inf(1), Count: max(total, buckets[n-1].Count)})
	}
	if len(buckets) == 0 || buckets[len(buckets)-1].Count == 0 || q < 0 || q > 1 || math.IsNaN(q) {
		return math.NaN()
	}
	observations := float64(buckets[len(buckets)-1].Count)
	rank := q * observations
	i := sort.Search(len(buckets), func(i int) bool { return float64(buckets[i].Count) >= rank })
	if i == len(buckets)-1 {
		if len(buckets) == 1 {
			return math.NaN()
		}
		return buckets[len(buckets)-2].UpperBound
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = buckets[i-1].UpperBound, float64(buckets[i-1].Count)
	}
	in := float64(buckets[i].Count) - below
	if in == 0 {
		return buckets[i].UpperBound
	}
	return lower + (buckets[i].UpperBound-lower)*(rank-below)/in
}

// QuantileDuration is Quantile in a time.Duration, 0 when empty.
func (h Histogram) QuantileDuration(q float64) time.Duration {
	v := h.Quantile(q)
	if math.IsNaN(v) {
		return 0
	}
	return time.Duration(v * float64(time.Second))
}
