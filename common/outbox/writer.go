package outbox

import "go.mongodb.org/mongo-driver/bson/primitive"

// Notifier is what a writer of outbox entries tells after each write that
// left entries pending: the document's id and its whole pending outbox as
// stored (an *Relay: see Relay.NotifyPending), so that the events go out at
// once instead of at the next poll. Every service's store (expiration: its
// scheduler) takes one at construction; declared here so that all of them
// name the same contract.
type Notifier interface {
	NotifyPending(docID any, pending ...Entry)
}

// Trimmer tells a writer which published entries its next write may remove
// itself (an *Relay: see Relay.Published and Relay.Dropped). A store whose
// Notifier is also a Trimmer uses it.
type Trimmer interface {
	Published(docID any, pending []Entry) (Trim, bool)
	Dropped(docID any, ids []primitive.ObjectID)
}
