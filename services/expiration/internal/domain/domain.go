// Package domain holds the expiration service's model: an order's
// reservation and the life cycle of its expiration.
package domain

import "time"

// State is where an expiration is in its life cycle.
type State string

const (
	// Pending: scheduled, not yet due or not yet fired.
	Pending State = "pending"
	// Fired: expiration:complete was recorded for publishing (the outbox
	// relay publishes it); it never fires again.
	Fired State = "fired"
	// Dropped: the order was cancelled before it expired. A Dropped record
	// is also a tombstone: an order:created that arrives after its
	// order:cancelled schedules nothing.
	Dropped State = "dropped"
)

// Expiration is one order's pending reservation expiry.
type Expiration struct {
	OrderID   string
	ExpiresAt time.Time
	State     State
}

// Due says whether e must fire at now.
func (e Expiration) Due(now time.Time) bool {
	return e.State == Pending && !e.ExpiresAt.After(now)
}
