package events

import "github.com/ticketing-go/ticketing/common/metrics"

// Metrics in the default registry (served by httpx's /metrics).
var (
	published = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "events_published_total",
		Help: "Events published and acknowledged by the broker.",
	}, []string{"subject"})
	consumed = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "events_consumed_total",
		Help: "Event deliveries handled, by result: ack, retry (no ack, redelivered), dead_letter, ack_failed.",
	}, []string{"subject", "result"})
	redelivered = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "events_redelivered_total",
		Help: "Deliveries the server marked as redelivered.",
	}, []string{"subject"})
	handleSeconds = metrics.NewHistogramVec(metrics.HistogramOpts{
		Name:    "events_handle_seconds",
		Help:    "Time a handler took per delivery (including waits for predecessors).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"subject"})
	deadLettered = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "events_dead_lettered_total",
		Help: "Messages given up on and published to the dead-letter subject.",
	}, []string{"subject"})
	duplicates = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "events_duplicates_total",
		Help: "Deliveries acknowledged without being applied: the record already held their version or a later one (duplicate or stale deliveries; see Duplicate).",
	}, []string{"subject", "queue_group"})
)
