package events

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics in the default registry (served by httpx's /metrics).
var (
	published = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "events_published_total",
		Help: "Events published and acknowledged by NATS Streaming.",
	}, []string{"subject"})
	consumed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "events_consumed_total",
		Help: "Event deliveries handled, by result: ack, retry (no ack, redelivered after AckWait), dead_letter, ack_failed.",
	}, []string{"subject", "result"})
	redelivered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "events_redelivered_total",
		Help: "Deliveries the server marked as redelivered.",
	}, []string{"subject"})
	handleSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "events_handle_seconds",
		Help:    "Time a handler took per delivery (including waits for predecessors).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"subject"})
	deadLettered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "events_dead_lettered_total",
		Help: "Messages given up on and published to the dead-letter subject.",
	}, []string{"subject"})
)
