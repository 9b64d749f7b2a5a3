package outbox

import "time"

// SetRemovalFault makes each removal command of r call fault first and
// fail with its error, if any, as a failing store would. Set it before Run.
func SetRemovalFault(r *Relay, fault func() error) { r.removeFault = fault }

// SetRememberRemoved sets how long r remembers entries as sent after their
// removal (rememberRemoved). Set it before Run.
func SetRememberRemoved(r *Relay, d time.Duration) { r.remember = d }

// The writer's primitives that Records uses, for tests that write outbox
// entries the way it does.
var (
	NewEntry      = newEntry
	Push          = push
	UpdatePending = updatePending
)
