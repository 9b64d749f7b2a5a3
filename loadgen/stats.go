package main

import (
	"math"
	"sort"
	"time"
)

// Summary is the latency distribution and throughput of one run.
type Summary struct {
	Ops      int     `json:"ops"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50Ms"`
	P90ms    float64 `json:"p90Ms"`
	P99ms    float64 `json:"p99Ms"`
	MaxMs    float64 `json:"maxMs"`
	MeanMs   float64 `json:"meanMs"`
	ErrorMsg string  `json:"firstError,omitempty"`
	// AllOps: every operation issued, warm-up and failed ones included.
	AllOps int `json:"allOps"`
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 for an empty slice. sorted must be in ascending order.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// Summarize sorts lat in place and computes the summary of a run that took
// elapsed; errors are counted apart (their latencies are not in lat).
func Summarize(lat []time.Duration, errors int, elapsed time.Duration) Summary {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s := Summary{Ops: len(lat), Errors: errors, Seconds: elapsed.Seconds()}
	if elapsed > 0 {
		s.RPS = float64(len(lat)) / elapsed.Seconds()
	}
	if len(lat) == 0 {
		return s
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	s.P50ms = ms(Percentile(lat, 50))
	s.P90ms = ms(Percentile(lat, 90))
	s.P99ms = ms(Percentile(lat, 99))
	s.MaxMs = ms(lat[len(lat)-1])
	s.MeanMs = ms(sum / time.Duration(len(lat)))
	return s
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000
}

// Ratio is a/b, or 0 when b is 0 (no floor measured).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}
