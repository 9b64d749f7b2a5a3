package events

import "context"

// deliveryKey carries the *Msg being handled in the handler's context, so
// that code deep in a handler (package inorder) can label what it counts
// with the delivery's subject and queue group.
type deliveryKey struct{}

// withDelivery returns ctx carrying m (see Duplicate).
func withDelivery(ctx context.Context, m *Msg) context.Context {
	return context.WithValue(ctx, deliveryKey{}, m)
}

// Duplicate counts the delivery being handled in ctx as a duplicate or
// stale one (events_duplicates_total{subject,queue_group}): it is
// acknowledged without being applied because the record already holds its
// version or a later one. Called outside a handler of this package (no
// delivery in ctx) it does nothing.
func Duplicate(ctx context.Context) {
	if m, _ := ctx.Value(deliveryKey{}).(*Msg); m != nil {
		duplicates.WithLabelValues(m.Subject, m.QueueGroup).Inc()
	}
}
