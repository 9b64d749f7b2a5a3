package standin

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"slices"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsontype"
	"golang.org/x/sync/semaphore"
)

// Write scopes: which documents a write command can change, so that the
// front serialises exactly the writes that can interfere.
//
// A write whose every statement names one document by an equality on _id
// (what a conditional write on a document looks like: {_id, version: n},
// {_id, rev: n}, {_id, outbox: {$all: ...}}) can only race with other
// writes of that document; the front serialises it with those and lets
// writes of other documents of the collection run beside it, as MongoDB's
// document-level concurrency does. Serialising the whole collection (the
// front's first rule) made every write workload on one collection queue
// for its turn: the benchmark measured the turn held 95-99 % of the time
// while the CPUs had room, so it measured the front, not the work.
//
// Any other write (a filter without an _id equality, an _id operator such as
// $in, a command the front cannot parse) takes the whole collection, and
// waits for and excludes every write of it. An insert changes no existing
// document: it takes no document, only a share of the collection (FerretDB
// enforces unique indexes itself, in the backend).

// scope is the part of a collection a write command may change.
type scope struct {
	whole bool     // the collection
	docs  []string // else: these documents (their _id, type byte + raw value)
}

// weight is how many of FerretDB's connections the write may hold at once:
// one per statement (a whole-collection write: as many as a bulk may have).
func (s scope) weight() int64 {
	switch {
	case s.whole:
		return maxStatementsWeight
	case len(s.docs) == 0:
		return 1 // an insert
	default:
		return int64(min(len(s.docs), maxStatementsWeight))
	}
}

// maxStatementsWeight caps a write's weight: a larger update or delete is
// run in parts of this many statements (split.go).
const maxStatementsWeight = 8

// writeScope returns the scope of write command cmd (lower-case) in msg.
func writeScope(msg []byte, cmd string) scope {
	body, seqs, ok := sections(msg)
	if !ok {
		return scope{whole: true}
	}
	var stmts []bson.Raw
	var filterKey string
	switch cmd {
	case "insert":
		return scope{}
	case "findandmodify":
		q, ok := body.Lookup("query").DocumentOK()
		if !ok {
			return scope{whole: true}
		}
		stmts, filterKey = []bson.Raw{q}, ""
	case "update", "delete":
		name := cmd + "s"
		stmts, filterKey = seqs[name], "q"
		if stmts == nil {
			arr, ok := body.Lookup(name).ArrayOK()
			if !ok {
				return scope{whole: true}
			}
			vals, err := arr.Values()
			if err != nil {
				return scope{whole: true}
			}
			for _, v := range vals {
				d, ok := v.DocumentOK()
				if !ok {
					return scope{whole: true}
				}
				stmts = append(stmts, d)
			}
		}
	default:
		return scope{whole: true}
	}
	if len(stmts) == 0 {
		return scope{whole: true}
	}
	s := scope{}
	for _, st := range stmts {
		q := st
		if filterKey != "" {
			var ok bool
			if q, ok = st.Lookup(filterKey).DocumentOK(); !ok {
				return scope{whole: true}
			}
		}
		id, ok := idKey(q)
		if !ok {
			return scope{whole: true}
		}
		s.docs = append(s.docs, id)
	}
	return s
}

// idKey returns the _id a filter names by equality, as a comparable key.
func idKey(filter bson.Raw) (string, bool) {
	v, err := filter.LookupErr("_id")
	if err != nil {
		return "", false
	}
	if v.Type == bsontype.EmbeddedDocument {
		// {_id: {$in: ...}} and the like; a literal document _id whose first
		// key is not an operator is an equality.
		elems, err := v.Document().Elements()
		if err != nil || len(elems) == 0 || elems[0].Key()[0] == '$' {
			return "", false
		}
	}
	return string(append([]byte{byte(v.Type)}, v.Value...)), true
}

// sections splits an OP_MSG into its body and its document sequences.
func sections(msg []byte) (body bson.Raw, seqs map[string][]bson.Raw, ok bool) {
	bad := false // f stops eachSection early on a malformed sequence
	ok = eachSection(msg, func(kind byte, data []byte) bool {
		switch kind {
		case 0:
			body = bson.Raw(data)
			return true
		case 1:
			sec := data[4:]
			j := indexByte(sec, 0)
			if j < 0 {
				bad = true
				return false
			}
			name := string(sec[:j])
			for rest := sec[j+1:]; len(rest) > 0; {
				n := 0
				if len(rest) >= 5 {
					n = int(binary.LittleEndian.Uint32(rest))
				}
				if n < 5 || n > len(rest) {
					bad = true
					return false
				}
				if seqs == nil {
					seqs = map[string][]bson.Raw{}
				}
				seqs[name] = append(seqs[name], bson.Raw(rest[:n]))
				rest = rest[n:]
			}
			return true
		default:
			bad = true
			return false
		}
	})
	return body, seqs, ok && !bad && body != nil
}

// stripes per collection: documents hash onto them; two documents on one
// stripe are serialised with each other, which costs only parallelism.
const stripes = 64

// collLock serialises the writes of one collection by scope. Every wait on
// it ends when ctx does: a write whose client went away while it waited is
// dropped, never run (see pair.requests).
type collLock struct {
	// shared: a document write or an insert holds one unit, a
	// whole-collection write all of them (FIFO: a waiting whole-collection
	// write holds back the writes that come after it).
	shared *semaphore.Weighted
	// stripes: a document write holds the token of each of its documents'
	// stripes while it runs.
	stripes [stripes]chan struct{}
}

func newCollLock() *collLock {
	c := &collLock{shared: semaphore.NewWeighted(stripes)}
	for i := range c.stripes {
		c.stripes[i] = make(chan struct{}, 1)
	}
	return c
}

// lock takes what s needs and returns the release (callable from another
// goroutine). It waits only for what is held; an ended ctx ends a wait and
// releases what it took.
func (c *collLock) lock(ctx context.Context, s scope) (unlock func(), err error) {
	units := int64(1)
	if s.whole {
		units = stripes
	}
	if !c.shared.TryAcquire(units) {
		if err := c.shared.Acquire(ctx, units); err != nil {
			return nil, err
		}
	}
	idx := make([]int, 0, len(s.docs))
	for _, d := range s.docs {
		h := fnv.New32a()
		h.Write([]byte(d))
		idx = append(idx, int(h.Sum32()%stripes))
	}
	slices.Sort(idx) // one order for everyone: no deadlock between multi-document writes
	idx = slices.Compact(idx)
	taken := 0
	unlock = func() {
		for _, i := range idx[:taken] {
			<-c.stripes[i]
		}
		c.shared.Release(units)
	}
	for _, i := range idx {
		select {
		case c.stripes[i] <- struct{}{}:
		default:
			select {
			case c.stripes[i] <- struct{}{}:
			case <-ctx.Done():
				unlock()
				return nil, ctx.Err()
			}
		}
		taken++
	}
	return unlock, nil
}
