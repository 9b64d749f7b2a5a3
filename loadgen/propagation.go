package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// Replica reads the orders service's ticket replica directly.
type Replica struct{ Coll *mongo.Collection }

// idKey is the replica's _id of a ticket id: an ObjectId (as the orders
// service stores it), or the string when it is not one.
func idKey(id string) any {
	if oid, err := primitive.ObjectIDFromHex(id); err == nil {
		return oid
	}
	return id
}

func idString(v any) string {
	switch t := v.(type) {
	case primitive.ObjectID:
		return t.Hex()
	case string:
		return t
	default:
		return fmt.Sprint(t)
	}
}

// Versions returns the replica's version of each of ids it holds: one
// lookup by _id per ticket, in parallel (FerretDB answers an equality on
// _id much faster than an $in).
func (r Replica) Versions(ctx context.Context, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var doc struct {
				Version int64 `bson:"version"`
			}
			err := r.Coll.FindOne(ctx, bson.M{"_id": idKey(id)}, options.FindOne().SetProjection(bson.M{"version": 1})).Decode(&doc)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				out[id] = doc.Version
			case errors.Is(err, mongo.ErrNoDocuments):
			default:
				if firstErr == nil {
					firstErr = err
				}
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}

// WaitVersion polls until the replica holds ticket id at version >= v and
// returns when it saw it.
func (r Replica) WaitVersion(ctx context.Context, id string, v int64) (time.Time, error) {
	for {
		got, err := r.Versions(ctx, []string{id})
		now := time.Now()
		if have, ok := got[id]; err == nil && ok && have >= v {
			return now, nil
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("replica never held %s v%d (has %v, err %v)", id, v, got[id], err)
		}
	}
}

// Pending tracks acknowledged updates until the replica holds them.
type Pending struct {
	mu    sync.Mutex
	byID  map[string][]pend
	lat   []time.Duration
	count int
}

type pend struct {
	version int64
	at      time.Time
}

// NewPending returns an empty tracker.
func NewPending() *Pending { return &Pending{byID: map[string][]pend{}} }

// Add records that ticket id was acknowledged at version v at time at.
func (p *Pending) Add(id string, v int64, at time.Time) {
	p.mu.Lock()
	p.byID[id] = append(p.byID[id], pend{v, at})
	p.count++
	p.mu.Unlock()
}

// IDs lists the tickets with pending versions.
func (p *Pending) IDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.byID))
	for id := range p.byID {
		ids = append(ids, id)
	}
	return ids
}

// Observe resolves every pending version <= the replica's version, with the
// latency up to seen.
func (p *Pending) Observe(versions map[string]int64, seen time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, have := range versions {
		ps := p.byID[id]
		keep := ps[:0]
		for _, x := range ps {
			if x.version <= have {
				p.lat = append(p.lat, seen.Sub(x.at))
			} else {
				keep = append(keep, x)
			}
		}
		if len(keep) == 0 {
			delete(p.byID, id)
		} else {
			p.byID[id] = keep
		}
	}
}

// Left is the number of versions not seen yet.
func (p *Pending) Left() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ps := range p.byID {
		n += len(ps)
	}
	return n
}

// Latencies returns the resolved latencies.
func (p *Pending) Latencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.lat...)
}

// drainWait bounds how long the propagation run waits, after the last PUT,
// for the replica to catch up; what it has not seen by then is reported as
// unconverged.
const drainWait = 20 * time.Second

// RunPropagation PUTs tickets (each on its own paced loop) at rate updates/s
// in total for d and measures, by polling the replica back to back, when
// the replica holds each acknowledged version.
func RunPropagation(ctx context.Context, api *API, s *Session, rep Replica, tickets []Ticket, rate int, d time.Duration) (*Propagation, error) {
	pend := NewPending()
	var errs int
	var errMu sync.Mutex
	start := time.Now()
	stop := start.Add(d)
	period := time.Duration(float64(time.Second) * float64(len(tickets)) / float64(rate))
	var wg sync.WaitGroup
	for i, t := range tickets {
		wg.Add(1)
		go func(i int, id string) {
			defer wg.Done()
			next := start.Add(period * time.Duration(i) / time.Duration(len(tickets)))
			for n := 0; ; n++ {
				if !next.Before(stop) || ctx.Err() != nil {
					return
				}
				if w := time.Until(next); w > 0 {
					time.Sleep(w) // pacing an open-loop load, not synchronisation
				}
				got, err := api.UpdateTicket(ctx, s, id, fmt.Sprintf("prop %d", n), float64(10+n%50))
				at := time.Now()
				if err != nil {
					errMu.Lock()
					errs++
					errMu.Unlock()
				} else {
					pend.Add(id, got.Version, at)
				}
				next = next.Add(period)
			}
		}(i, t.ID)
	}
	ids := make([]string, len(tickets))
	for i, t := range tickets {
		ids[i] = t.ID
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	polls := 0
	pollStart := time.Now()
	deadline := time.Time{}
	for {
		done := false
		select {
		case <-writersDone:
			done = true
		default:
		}
		if done && deadline.IsZero() {
			deadline = time.Now().Add(drainWait)
		}
		if done && (pend.Left() == 0 || time.Now().After(deadline)) {
			break
		}
		pids := pend.IDs()
		if len(pids) == 0 {
			// Nothing in flight: wait for the next acknowledged write.
			time.Sleep(200 * time.Microsecond)
			continue
		}
		v, err := rep.Versions(ctx, pids)
		seen := time.Now()
		polls++
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		pend.Observe(v, seen)
	}
	lat := pend.Latencies()
	sum := Summarize(lat, 0, time.Since(start))
	p := &Propagation{
		TargetRate: rate, Tickets: len(tickets), Updates: len(lat) + pend.Left(), Errors: errs,
		Unconverged: pend.Left(), P50ms: sum.P50ms, P90ms: sum.P90ms, P99ms: sum.P99ms, MaxMs: sum.MaxMs,
	}
	p.AchievedRate = float64(p.Updates) / d.Seconds()
	if polls > 0 {
		p.PollMeanMs = ms(time.Since(pollStart) / time.Duration(polls))
	}
	return p, nil
}

// RunConvergence does rounds of n back-to-back PUTs on one ticket each and
// measures when the replica holds the last version.
func RunConvergence(ctx context.Context, api *API, s *Session, rep Replica, tickets []Ticket, n int) *Convergence {
	c := &Convergence{Updates: n}
	var after, fromFirst []time.Duration
	for _, t := range tickets {
		c.Rounds++
		first := time.Now()
		var last Ticket
		var lastAt time.Time
		ok := true
		for i := 0; i < n; i++ {
			got, err := api.UpdateTicket(ctx, s, t.ID, fmt.Sprintf("conv %d", i), float64(10+i))
			if err != nil {
				ok = false
				break
			}
			last, lastAt = got, time.Now()
		}
		if !ok {
			c.Failed++
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		seen, err := rep.WaitVersion(wctx, t.ID, last.Version)
		cancel()
		if err != nil {
			c.Failed++
			continue
		}
		after = append(after, seen.Sub(lastAt))
		fromFirst = append(fromFirst, seen.Sub(first))
		c.AfterLastMs = append(c.AfterLastMs, ms(seen.Sub(lastAt)))
	}
	a := Summarize(after, 0, time.Second)
	c.P50ms, c.MaxMs = a.P50ms, a.MaxMs
	c.FromFirstMs = Summarize(fromFirst, 0, time.Second).P50ms
	return c
}
