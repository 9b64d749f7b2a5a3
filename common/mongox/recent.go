package mongox

import "sync"

// Recent remembers the state a process last wrote of recently written
// documents, each with the revision (the optimistic-concurrency counter) it
// was written at, so that the next read-modify-write of the same document
// can skip its read: the caller decides on the remembered state and writes
// conditionally on its revision. The write matches only if nobody wrote
// the document since, which proves the remembered state current; if it
// does not match, or the caller's rules refuse the remembered state, the
// caller reads the stored state and decides again. A decision is never
// final on a remembered state alone.
//
// What it saves: a document written and then changed again by the same
// process (a ticket edited over and over, an order created and then
// cancelled, a replica record inserted and then updated by the next event)
// costs one round trip per change instead of two.
//
// Bounded: past max documents, an arbitrary one is dropped. Safe for
// concurrent use. The zero value is not usable; use NewRecent.
type Recent[K comparable, D any] struct {
	mu   sync.Mutex
	max  int
	docs map[K]remembered[D]
}

type remembered[D any] struct {
	rev int64
	doc D
}

// NewRecent returns an empty cache of at most max documents.
func NewRecent[K comparable, D any](max int) *Recent[K, D] {
	return &Recent[K, D]{max: max, docs: make(map[K]remembered[D])}
}

// Get returns the remembered state of id and its revision.
func (r *Recent[K, D]) Get(id K) (doc D, rev int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.docs[id]
	return d.doc, d.rev, ok
}

// Put remembers doc as the state of id at rev, unless a later revision is
// remembered already (writers put after writing, in any order). doc must
// not be changed afterwards (copy what it shares).
func (r *Recent[K, D]) Put(id K, rev int64, doc D) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.docs[id]
	if ok && old.rev >= rev {
		return
	}
	if !ok && len(r.docs) >= r.max {
		for k := range r.docs { // an arbitrary one: map order is random
			delete(r.docs, k)
			break
		}
	}
	r.docs[id] = remembered[D]{rev: rev, doc: doc}
}

// Forget drops the remembered state of id if it is at rev or older (a
// write conditional on rev did not match): a newer one stays.
func (r *Recent[K, D]) Forget(id K, rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.docs[id]; ok && d.rev <= rev {
		delete(r.docs, id)
	}
}
