package main

import (
	"context"
	"sync"
	"time"
)

// Op is one operation of a closed-loop worker; worker is 0..concurrency-1.
type Op func(ctx context.Context, worker int) error

// RunClosed runs op in concurrency closed loops (each worker issues its
// next operation as soon as the previous returns) for d after a warm-up
// whose operations are not counted.
func RunClosed(ctx context.Context, concurrency int, warmup, d time.Duration, op Op) Summary {
	type result struct {
		lat    []time.Duration
		all    int // every operation, warm-up and failed ones too
		errs   int
		errMsg string
	}
	results := make([]result, concurrency)
	start := time.Now()
	measureFrom := start.Add(warmup)
	stop := measureFrom.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := &results[w]
			r.lat = make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(stop) {
					return
				}
				err := op(ctx, w)
				t1 := time.Now()
				r.all++
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					r.errs++
					if r.errMsg == "" {
						r.errMsg = err.Error()
					}
					continue
				}
				r.lat = append(r.lat, t1.Sub(t0))
			}
		}(w)
	}
	wg.Wait()
	// The last operations may end after stop; measure to the real end.
	elapsed := time.Since(measureFrom)
	var all []time.Duration
	errs, msg, allOps := 0, "", 0
	for _, r := range results {
		allOps += r.all
		all = append(all, r.lat...)
		errs += r.errs
		if msg == "" {
			msg = r.errMsg
		}
	}
	s := Summarize(all, errs, elapsed)
	s.ErrorMsg = msg
	s.AllOps = allOps
	return s
}
