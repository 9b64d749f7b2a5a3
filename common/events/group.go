package events

import (
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
)

// Subscriber is what a service's listeners need of the connection
// (*Conn; tests may pass a fake). Declared here, where SubscribeGroup
// consumes it, and nowhere else.
type Subscriber interface {
	Subscribe(s Subscription, h Handler) error
}

// Route is one subject a service listens to and the handler that applies
// it: nil acknowledges the message, an error leaves it to redelivery, a
// Poison error dead-letters it (see Handler).
type Route struct {
	Subject Subject
	Handler Handler
}

// Group is the subscription settings a service's listeners share; zero
// values take the defaults of Subscription.
type Group struct {
	Name          string // the queue group and durable name ("orders-service")
	AckWait       time.Duration
	MaxInflight   int
	MaxDeliveries int
	Log           *slog.Logger
}

// SubscribeGroup subscribes every route in queue group g with the
// middleware every service uses, so that no service can forget one:
// Logging (each failure with its attempt) around the handler. Retries
// (redelivery after AckWait), the dead letter after MaxDeliveries and of
// Poison errors, and panic recovery are done by the subscription itself.
func SubscribeGroup(sub Subscriber, g Group, routes ...Route) error {
	log := g.Log
	if log == nil {
		log = slog.Default()
	}
	for _, r := range routes {
		err := sub.Subscribe(Subscription{
			Subject:       r.Subject,
			QueueGroup:    g.Name,
			AckWait:       g.AckWait,
			MaxInflight:   g.MaxInflight,
			MaxDeliveries: g.MaxDeliveries,
			Middleware:    []Middleware{Logging(log)},
		}, r.Handler)
		if err != nil {
			return err
		}
	}
	return nil
}

// DefaultGapWait is how long an event that arrives ahead of its
// predecessor waits for it in-process (inorder.Gate) before it is left to
// redelivery. It must stay below the AckWait (see DefaultAckWait).
const DefaultGapWait = 5 * time.Second

// WaitsFromEnv reads the listeners' ACK_WAIT (default DefaultAckWait) and
// GAP_WAIT (default DefaultGapWait) and checks that GAP_WAIT < ACK_WAIT: an
// event waiting for its predecessor longer would be redelivered while it
// waits.
func WaitsFromEnv(env *config.Env) (ackWait, gapWait time.Duration) {
	ackWait = env.Duration("ACK_WAIT", DefaultAckWait)
	gapWait = env.Duration("GAP_WAIT", DefaultGapWait)
	env.Check(gapWait < ackWait, "GAP_WAIT (%s) must be less than ACK_WAIT (%s): an event waiting for its predecessor would be redelivered while it waits", gapWait, ackWait)
	return ackWait, gapWait
}
