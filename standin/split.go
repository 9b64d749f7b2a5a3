package standin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/x/bsonx/bsoncore"
)

// Splitting large bulk writes.
//
// FerretDB v1 holds one of its PostgreSQL connections per statement of an
// update or delete command until the whole command returns, so one bulk
// write of a few dozen statements can take the pool and wait for more
// (the stand-in hung). MongoDB runs a bulk write statement by statement,
// each atomic on its own, and clients (the expiration service purges
// hundreds of records in one command) rightly send large ones. The
// front runs such a command as consecutive commands of at most
// maxStatementsWeight statements on a connection of its own to FerretDB,
// each taking its own turn (scope) like any write, and answers the client
// once, with the counts summed and the indexes of errors and upserts
// shifted back to the client's statements. What the client sees is what
// MongoDB answers to the same bulk: an ordered bulk stops at its first
// failing statement, an unordered one runs them all.

// bulkToSplit is a write command the front runs in parts.
type bulkToSplit struct {
	reqID   int32
	cmd     string // "update" or "delete"
	body    bson.Raw
	seqName string // "updates" or "deletes"
	stmts   []bson.Raw
}

// splitCandidate returns msg as a bulkToSplit when it is an update or delete
// with more than maxStatementsWeight statements in a document sequence (the
// form drivers send) and nothing the front would have to carry over (no
// checksum, a reply expected).
func splitCandidate(msg []byte, cmd string) (bulkToSplit, bool) {
	if cmd != "update" && cmd != "delete" || len(msg) < headerLen+4 ||
		binary.LittleEndian.Uint32(msg[16:20]) != 0 {
		return bulkToSplit{}, false
	}
	body, seqs, ok := sections(msg)
	name := cmd + "s"
	if !ok || len(seqs) != 1 || len(seqs[name]) <= maxStatementsWeight {
		return bulkToSplit{}, false
	}
	return bulkToSplit{
		reqID: int32(binary.LittleEndian.Uint32(msg[4:8])),
		cmd:   cmd, body: body, seqName: name, stmts: seqs[name],
	}, true
}

// runSplit runs b in parts and answers the client. false: the pair must
// stop (the client went away while a part waited for its turn, or a
// connection failed); the parts run so far stay done, as a bulk write
// interrupted on MongoDB does.
func (p *pair) runSplit(ctx context.Context, ns string, b bulkToSplit) bool {
	partBody := withoutKey(b.body, "txnNumber") // FerretDB v1 has no retryable writes; each part is a command of its own
	ordered := true
	if v, ok := b.body.Lookup("ordered").BooleanOK(); ok {
		ordered = v
	}
	nparts := (len(b.stmts) + maxStatementsWeight - 1) / maxStatementsWeight
	replies := make([][]byte, nparts)
	run := func(i, conn int) error {
		off := i * maxStatementsWeight
		msg := opMsgBytes(b.reqID, partBody, b.seqName, b.stmts[off:min(off+maxStatementsWeight, len(b.stmts))])
		side, err := p.sideConn(conn)
		if err != nil {
			return err
		}
		replies[i], err = p.runPart(ctx, ns, b.cmd, msg, side)
		return err
	}
	var err error
	if ordered {
		// Part by part, stopping at the first that fails.
		for i := 0; i < nparts && err == nil; i++ {
			if err = run(i, 0); err == nil && partFailed(replies[i]) {
				break
			}
		}
	} else {
		// splitParallel parts at a time, each on a connection of its own.
		next := atomic.Int64{}
		var wg sync.WaitGroup
		errs := make([]error, splitParallel)
		for c := range splitParallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < nparts && errs[c] == nil; i = int(next.Add(1)) - 1 {
					errs[c] = run(i, c)
				}
			}()
		}
		wg.Wait()
		err = errors.Join(errs...)
	}
	if err != nil {
		if ctx.Err() == nil {
			p.f.log.Error("standin: split write", "ns", ns, "err", err)
		}
		return false
	}
	var n, nModified int64
	var writeErrors, upserted []bson.Raw
	var writeConcernError bson.Raw
	for i, reply := range replies {
		if reply == nil {
			break // an ordered bulk stopped before this part
		}
		r := bson.Raw(bodyOf(reply))
		if intOf(r.Lookup("ok")) != 1 {
			// The command failed as a whole (not a statement): the
			// client gets FerretDB's answer.
			binary.LittleEndian.PutUint32(reply[8:12], uint32(b.reqID))
			_, err := p.client.Write(reply)
			return err == nil
		}
		n += intOf(r.Lookup("n"))
		nModified += intOf(r.Lookup("nModified"))
		for _, group := range []struct {
			key string
			to  *[]bson.Raw
		}{{"writeErrors", &writeErrors}, {"upserted", &upserted}} {
			arr, ok := r.Lookup(group.key).ArrayOK()
			if !ok {
				continue
			}
			vals, _ := arr.Values()
			for _, v := range vals {
				if d, ok := v.DocumentOK(); ok {
					*group.to = append(*group.to, shiftIndex(d, i*maxStatementsWeight))
				}
			}
		}
		if wce, ok := r.Lookup("writeConcernError").DocumentOK(); ok && writeConcernError == nil {
			writeConcernError = wce
		}
	}
	reply := bson.D{{Key: "n", Value: n}}
	if b.cmd == "update" {
		reply = append(reply, bson.E{Key: "nModified", Value: nModified})
	}
	if len(upserted) > 0 {
		reply = append(reply, bson.E{Key: "upserted", Value: upserted})
	}
	if len(writeErrors) > 0 {
		reply = append(reply, bson.E{Key: "writeErrors", Value: writeErrors})
	}
	if writeConcernError != nil {
		reply = append(reply, bson.E{Key: "writeConcernError", Value: writeConcernError})
	}
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	doc, err := bson.Marshal(reply)
	if err != nil {
		return false
	}
	out := opMsgBytes(0, doc, "", nil)
	binary.LittleEndian.PutUint32(out[8:12], uint32(b.reqID))
	_, err = p.client.Write(out)
	return err == nil
}

// runPart sends one part on the side connection in its turn and returns
// FerretDB's reply.
func (p *pair) runPart(ctx context.Context, ns, cmd string, msg []byte, side net.Conn) ([]byte, error) {
	sc := writeScope(msg, cmd)
	w := sc.weight()
	p.f.waiting.Add(1)
	if err := p.f.slots.Acquire(ctx, w); err != nil {
		p.f.waiting.Add(-1)
		return nil, err
	}
	unlock, err := p.f.collLock(ns).lock(ctx, sc)
	p.f.waiting.Add(-1)
	if err != nil {
		p.f.slots.Release(w)
		return nil, err
	}
	start := time.Now()
	defer func() {
		unlock()
		p.f.slots.Release(w)
		p.f.add(ns+" write_turn_us", time.Since(start).Microseconds())
	}()
	// Once sent, the part runs to its end whatever the client does: its
	// turn is released only with its reply (see stop in handle).
	if _, err := side.Write(msg); err != nil {
		return nil, err
	}
	side.SetReadDeadline(time.Now().Add(drainTimeout))
	reply, err := readMsg(side, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the reply to a part: %w", err)
	}
	return reply, nil
}

// splitParallel: the parts of an unordered bulk run this many at a time
// (each in its own turn, on a connection of its own): a relay's cleanup
// after a burst then uses both cores of a small machine.
const splitParallel = 2

// sideConn returns the pair's i-th connection of its own to FerretDB,
// dialled on first use (closed with the pair).
func (p *pair) sideConn(i int) (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sides[i] != nil {
		return p.sides[i], nil
	}
	c, err := net.Dial("tcp", p.f.backend)
	if err != nil {
		return nil, fmt.Errorf("dial backend: %w", err)
	}
	if !p.f.track(c) {
		c.Close()
		return nil, net.ErrClosed
	}
	p.sides[i] = c
	return c, nil
}

// partFailed reports whether a part's reply has a write error or failed.
func partFailed(reply []byte) bool {
	r := bson.Raw(bodyOf(reply))
	_, hasErrors := r.Lookup("writeErrors").ArrayOK()
	return hasErrors || intOf(r.Lookup("ok")) != 1
}

// opMsgBytes encodes an OP_MSG with body and, if seqName is set, one
// document sequence.
func opMsgBytes(reqID int32, body bson.Raw, seqName string, seq []bson.Raw) []byte {
	out := make([]byte, headerLen, headerLen+4+1+len(body)+64)
	binary.LittleEndian.PutUint32(out[4:8], uint32(reqID))
	binary.LittleEndian.PutUint32(out[12:16], opMsg)
	out = binary.LittleEndian.AppendUint32(out, 0) // flags
	out = append(out, 0)
	out = append(out, body...)
	if seqName != "" {
		out = append(out, 1)
		sizeAt := len(out)
		out = append(out, 0, 0, 0, 0)
		out = append(out, seqName...)
		out = append(out, 0)
		for _, d := range seq {
			out = append(out, d...)
		}
		binary.LittleEndian.PutUint32(out[sizeAt:], uint32(len(out)-sizeAt))
	}
	binary.LittleEndian.PutUint32(out[0:4], uint32(len(out)))
	return out
}

// withoutKey returns doc without its top-level element key.
func withoutKey(doc bson.Raw, key string) bson.Raw {
	elems, err := doc.Elements()
	if err != nil {
		return doc
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range elems {
		if e.Key() != key {
			out = append(out, e...)
		}
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out
}

// shiftIndex returns d (a writeErrors or upserted entry) with its index
// increased by off.
func shiftIndex(d bson.Raw, off int) bson.Raw {
	elems, err := d.Elements()
	if err != nil {
		return d
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range elems {
		if e.Key() == "index" {
			out = bsoncore.AppendInt32Element(out, "index", int32(intOf(e.Value())+int64(off)))
			continue
		}
		out = append(out, e...)
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out
}

// intOf reads a BSON number as int64 (0 if it is none).
func intOf(v bson.RawValue) int64 {
	if i, ok := v.AsInt64OK(); ok {
		return i
	}
	if f, ok := v.DoubleOK(); ok {
		return int64(f)
	}
	return 0
}
