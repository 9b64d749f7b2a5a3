package outbox

// SetRemovalFault makes each removal command of r call fault first and
// fail with its error, if any, as a failing store would. Set it before Run.
func SetRemovalFault(r *Relay, fault func() error) { r.removeFault = fault }
