package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// SumMetric sums every series of the metric named name in a Prometheus
// text exposition (all label values; histograms' _bucket/_sum/_count
// series have other names and are not included).
func SumMetric(exposition io.Reader, name string) (float64, error) {
	var sum float64
	sc := bufio.NewScanner(exposition)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a comment, another metric, or one whose name extends name
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			return 0, fmt.Errorf("%s: no value in %q", name, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// EventCounts are the consumer-side counters of the services, summed.
type EventCounts struct {
	Duplicates float64 // events_duplicates_total
	Deliveries float64 // events_consumed_total: deliveries handled, any result
	// Where duplicates come from: publishes acknowledged by the server
	// (events_published_total, one per event unless a relay published one
	// again) and deliveries the server marked redelivered
	// (events_redelivered_total: not acknowledged in time, or a failure).
	Published   float64
	Redelivered float64
}

// scrapeEvents reads /metrics of every URL and sums the event counters.
func scrapeEvents(ctx context.Context, hc *http.Client, urls []string) (EventCounts, error) {
	var c EventCounts
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return c, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return c, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return c, err
		}
		if resp.StatusCode != http.StatusOK {
			return c, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		d, err := SumMetric(strings.NewReader(string(body)), "events_duplicates_total")
		if err != nil {
			return c, err
		}
		n, err := SumMetric(strings.NewReader(string(body)), "events_consumed_total")
		if err != nil {
			return c, err
		}
		p, err := SumMetric(strings.NewReader(string(body)), "events_published_total")
		if err != nil {
			return c, err
		}
		r, err := SumMetric(strings.NewReader(string(body)), "events_redelivered_total")
		if err != nil {
			return c, err
		}
		c.Duplicates += d
		c.Deliveries += n
		c.Published += p
		c.Redelivered += r
	}
	return c, nil
}

// readStoreCounts reads the stand-in's cumulative command counts (GET
// /counts of mongo-standin -counts-listen): "db.collection command" -> n.
func readStoreCounts(ctx context.Context, hc *http.Client, url string) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	m := map[string]int64{}
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// writeCommands are the store commands that write.
var writeCommands = map[string]bool{"insert": true, "update": true, "delete": true, "findandmodify": true}

// StoreDelta is what the store did between two readings of its counts,
// less the commands the bench itself sent (own: by command name).
type StoreDelta struct {
	// Commands on data: those naming a collection, and getMore (whose
	// namespace the stand-in does not parse).
	Commands int64 `json:"commands"`
	// Writes: insert, update, delete and findAndModify, among Commands.
	Writes int64 `json:"writes"`
	// Other: messages naming no collection: connection handshakes (legacy
	// OP_QUERY, counted without a name), heartbeats (hello), pings.
	Other int64            `json:"other"`
	ByKey map[string]int64 `json:"byCollectionCommand"`
}

// dataCommand tells a data command from a connection's chatter by its
// key ("db.collection command", or " command" without a namespace).
func dataCommand(key string) bool {
	ns, cmd, _ := strings.Cut(key, " ")
	return ns != "" || strings.EqualFold(cmd, "getMore")
}

// DiffStoreCounts is after - before (keys "db.collection command"), with
// own (the commands the bench sent itself meanwhile, by command name, as
// its client's monitor sees them) taken out of the totals; ByKey keeps
// them, being keyed by collection, which the monitor does not tell apart.
func DiffStoreCounts(before, after map[string]int64, own map[string]int64) StoreDelta {
	d := StoreDelta{ByKey: map[string]int64{}}
	for k, v := range after {
		if n := v - before[k]; n > 0 {
			d.ByKey[k] = n
		}
	}
	for k, n := range d.ByKey {
		if dataCommand(k) {
			d.Commands += n
		} else {
			d.Other += n
		}
	}
	for k, n := range d.ByKey {
		if _, cmd, ok := strings.Cut(k, " "); ok && writeCommands[strings.ToLower(cmd)] {
			d.Writes += n
		}
	}
	for cmd, n := range own {
		d.Commands -= n
		if writeCommands[strings.ToLower(cmd)] {
			d.Writes -= n
		}
	}
	d.Commands, d.Writes = max(d.Commands, 0), max(d.Writes, 0)
	return d
}
