package inorder

// Trace makes g report the steps of its updates to f: f may block an
// update at StepTurn (before it queues for its key's turn). Call it before
// g is used.
func Trace(g *Gate, f func(k string, version int64, step string)) { g.trace = f }

// The steps Trace reports.
const (
	StepTurn    = stepTurn
	StepWaiting = stepWaiting
	StepWoken   = stepWoken
	StepSlept   = stepSlept
)
