package outbox

import "context"

// Notifier is what Records needs of the relay of its collection (an
// *Relay): numbering the entries a write will store, hearing how the write
// went, and which entries of a document are published. Every service's
// store takes one at construction (nil: entries are stored unnumbered and
// published by a relay's scan); declared here so that all of them name the
// same contract.
type Notifier interface {
	// Stamp numbers entries (Src, Seq) and tracks them until Settle. An
	// error (the relay cannot record itself, or has stopped) means the
	// write must not happen.
	Stamp(ctx context.Context, entries []Entry) error
	// Settle reports the write of stamped entries: Written with the
	// document's whole outbox as stored (published at once, in order),
	// NotWritten, or Unknown (an error after which the write may or may not
	// be applied: a scan settles it).
	Settle(docID any, entries []Entry, outcome Outcome, stored []Entry)
	// Published reports whether e is published, so that a write of its
	// document may drop it.
	Published(ctx context.Context, e Entry) bool
}

// Outcome is what became of a write of stamped entries.
type Outcome int

// Outcomes of a write (Notifier.Settle).
const (
	Written Outcome = iota + 1
	NotWritten
	Unknown
)
