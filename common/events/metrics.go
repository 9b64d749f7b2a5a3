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
	deadLettered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "events_dead_lettered_total",
		Help: "Messages given up on and published to the dead-letter subject.",
	}, []string{"subject"})
)
