package standin

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Wire protocol constants (MongoDB wire protocol).
const (
	opMsg          = 2013
	headerLen      = 16
	maxMsgLen      = 48_000_000 + 16*1024*1024 // maxMessageSizeBytes plus slack
	flagChecksum   = 1 << 0
	flagMoreToCome = 1 << 1
)

// writeCommands are serialised with the writes that can interfere with
// them: FerretDB v1 runs the read and the write of a conditional update
// without isolation, so concurrent conditional writes on one document can
// all succeed. MongoDB lets exactly one through.
//
// A write command (insert, update, delete, findAndModify) names exactly one
// collection, and a conditional write can only race with writes that touch
// the same documents. The front serialises the writes of one document
// (named by _id in every statement's filter) with each other, and a write
// it cannot pin to documents with every write of its collection (see
// scope.go). That keeps every conditional write atomic against every other
// write that could change its outcome, which is all the store contract asks
// (the 30-way races of TestFrontSerialisesConditionalWrites and testenv's
// contract test). History: one global token first, then one per collection;
// each step measured a queue for the turn with CPU to spare. FerretDB's
// backends cope with concurrent writes (PostgreSQL: row updates; SQLite:
// WAL with a busy timeout, and FerretDB's own metadata lock for implicit
// collection creation).
var writeCommands = map[string]bool{
	"insert":        true,
	"update":        true,
	"delete":        true,
	"findandmodify": true,
}

// front is a MongoDB wire-protocol proxy: every client connection gets its
// own backend connection; messages are forwarded unchanged, but a write
// command is held from sending the request to receiving its reply against
// the writes it could interfere with (writeCommands). Reads stay parallel.
type front struct {
	ln      net.Listener
	backend string // TCP address of FerretDB
	log     *slog.Logger

	mu    sync.Mutex
	colls map[string]*collLock // namespace -> its write lock
	// slots bounds the write statements FerretDB runs at once (see
	// writeSlots).
	slots *semaphore.Weighted
	// waiting counts the writes waiting for their turn.
	waiting atomic.Int64
	conns   map[net.Conn]struct{}
	counts  map[string]int64 // "db.collection command" -> commands seen since the last log, when logging them (Options.CountEvery)
	totals  map[string]int64 // "db.collection command" -> commands seen since the start, when kept (Options.CountTotals)
	closed  bool
	done    chan struct{} // closed by close
	wg      sync.WaitGroup
}

// writeSlots: with writes serialised per document, many run in FerretDB at
// once, and FerretDB v1 holds one of its 50 PostgreSQL connections per
// statement until the whole command returns, so a few dozen bulk writes
// took every connection while each waited for more: the stand-in hung
// (benchmark, 64 order cycles at once). Each write takes a slot per
// statement (scope.weight); 24 leave the rest of the pool to reads, which
// need one connection each and always finish. On SQLite (a pool of 100
// connections per database, one writer at a time) the same bound keeps
// writes waiting for SQLite's lock from taking the connections reads need.
const writeSlots = 24

func newFront(ln net.Listener, backend string, log *slog.Logger) *front {
	return &front{slots: semaphore.NewWeighted(writeSlots), ln: ln, backend: backend, log: log, colls: map[string]*collLock{}, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
}

func (f *front) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if !f.isClosed() {
				f.log.Error("standin: accept", "err", err)
			}
			return
		}
		f.wg.Add(1)
		go f.handle(c)
	}
}

// collLock returns the write lock of namespace ns. Locks are never removed:
// there is one per collection ever written through this front, a few
// kilobytes each, which is bounded enough for test and development servers.
func (f *front) collLock(ns string) *collLock {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.colls[ns]
	if !ok {
		l = newCollLock()
		f.colls[ns] = l
	}
	return l
}

// count adds one command to the counts and the totals, those that are kept.
func (f *front) count(msg []byte, name string) {
	f.mu.Lock()
	on := f.counts != nil || f.totals != nil
	f.mu.Unlock()
	if !on {
		return
	}
	key := namespaceOf(msg) + " " + name
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts != nil {
		f.counts[key]++
	}
	if f.totals != nil {
		f.totals[key]++
	}
}

// copyTotals returns the commands counted since the start (nil when not
// kept).
func (f *front) copyTotals() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.totals == nil {
		return nil
	}
	return maps.Clone(f.totals)
}

// add adds n to the count named key when counting is on ("<ns>
// write_turn_us": how long the namespace's write turn was held).
func (f *front) add(key string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts != nil {
		f.counts[key] += n
	}
}

// takeCounts returns the commands counted since the last call.
func (f *front) takeCounts() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.counts
	if c != nil {
		f.counts = map[string]int64{}
	}
	return c
}

func (f *front) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

func (f *front) close() error {
	f.mu.Lock()
	if !f.closed {
		close(f.done)
	}
	f.closed = true
	err := f.ln.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

// pair is one client connection and its backend connection.
type pair struct {
	f               *front
	client, backend net.Conn
	sides           [splitParallel]net.Conn // to FerretDB, for the parts of split writes (split.go); under mu

	mu      sync.Mutex
	held    func() // releases the write lock this pair holds, nil if none
	waitFor int32  // requestID whose reply releases it
	heldNS  string // its namespace and since when (for the counts)
	heldAt  time.Time
	heldCmd string      // the write command, for the slow-write warning
	slow    *time.Timer // warns while the write runs longer than slowWrite
	done    chan struct{}
}

// slowWrite: a write that holds its turn this long is logged (while it
// runs, and when it ends), because every write it serialises against waits
// behind it; the log says which one the others were queued behind.
const slowWrite = 5 * time.Second

func (f *front) handle(client net.Conn) {
	defer f.wg.Done()
	backend, err := net.Dial("tcp", f.backend)
	if err != nil {
		f.log.Error("standin: dial backend", "err", err)
		client.Close()
		return
	}
	if !f.track(client) || !f.track(backend) {
		client.Close()
		backend.Close()
		return
	}
	// ctx ends when the client goes away (its reader sees the connection
	// end) or the pair stops: a write still waiting for its turn then is
	// dropped, never sent. Run for a client that had already given up, it
	// would hold the turn for nothing, and under load such writes queue
	// faster than they run: every write of the collection would wait behind
	// a growing queue of abandoned ones (TestAbandonedWritesNeverRun,
	// TestWritesAreAlwaysAnswered).
	ctx, cancel := context.WithCancel(context.Background())
	p := &pair{f: f, client: client, backend: backend, done: make(chan struct{})}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			close(p.done)
			client.Close()
			if p.holding() {
				// The backend is still executing a write: keep reading
				// until its reply (replies), and release its turn only
				// then. Released at once, the next write of the same
				// documents would run beside it in FerretDB, and the older
				// one could write a stale document over the newer (seen:
				// a client timing out, then lost versions).
				backend.SetReadDeadline(time.Now().Add(drainTimeout))
				return
			}
			backend.Close()
		})
	}
	msgs := make(chan []byte)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); defer cancel(); p.readClient(msgs) }()
	go func() { defer wg.Done(); defer stop(); p.requests(ctx, msgs) }()
	go func() { defer wg.Done(); defer stop(); p.replies() }()
	wg.Wait()
	backend.Close()
	p.release(0, true)
	f.untrack(client)
	f.untrack(backend)
	for _, c := range p.sides {
		if c != nil {
			c.Close()
			f.untrack(c)
		}
	}
}

// readClient reads the client's messages into msgs until the client goes
// away or the pair stops. A driver sends nothing while it waits for a reply,
// so while a write waits for its turn this read is what notices that the
// client went away.
func (p *pair) readClient(msgs chan<- []byte) {
	defer close(msgs)
	for {
		msg, err := readMsg(p.client, nil)
		if err != nil {
			return
		}
		select {
		case msgs <- msg:
		case <-p.done:
			return
		}
	}
}

// requests forwards client messages to the backend, taking the write's
// turn before a write command that expects a reply. It gives up waiting
// when ctx ends.
func (p *pair) requests(ctx context.Context, msgs <-chan []byte) {
	for msg := range msgs {
		name, reply := commandOf(msg)
		p.f.count(msg, name)
		if lname := strings.ToLower(name); reply && writeCommands[lname] {
			ns := namespaceOf(msg)
			if b, ok := splitCandidate(msg, lname); ok {
				if !p.runSplit(ctx, ns, b) {
					return
				}
				continue
			}
			sc := writeScope(msg, lname)
			// Slots before locks: a write holding slots waits only for
			// writes that hold theirs and are running.
			w := sc.weight()
			p.f.waiting.Add(1)
			if err := p.f.slots.Acquire(ctx, w); err != nil {
				p.f.waiting.Add(-1)
				return
			}
			unlockDocs, err := p.f.collLock(ns).lock(ctx, sc)
			p.f.waiting.Add(-1)
			if err != nil {
				p.f.slots.Release(w)
				return
			}
			unlock := func() { unlockDocs(); p.f.slots.Release(w) }
			if ctx.Err() != nil {
				unlock()
				return
			}
			p.mu.Lock()
			p.held, p.waitFor = unlock, int32(binary.LittleEndian.Uint32(msg[4:8]))
			p.heldNS, p.heldAt, p.heldCmd = ns, time.Now(), lname
			p.slow = time.AfterFunc(slowWrite, func() {
				p.f.log.Warn("standin: a write is still running; the writes serialised with it wait", "ns", ns, "command", lname, "after", slowWrite)
			})
			p.mu.Unlock()
		}
		if _, err := p.backend.Write(msg); err != nil {
			return
		}
	}
}

// replies forwards backend messages to the client; the reply to the pending
// write command gives the write token back.
func (p *pair) replies() {
	buf := make([]byte, 0, 4096)
	for {
		msg, err := readMsg(p.backend, buf)
		if err != nil {
			return
		}
		buf = msg[:0]
		p.release(int32(binary.LittleEndian.Uint32(msg[8:12])), false)
		_, err = p.client.Write(msg)
		select {
		case <-p.done:
			err = net.ErrClosed
		default:
		}
		if err != nil && !p.holding() {
			return // the client is gone and no write of it is running
		}
	}
}

// drainTimeout bounds how long a pair whose client went away waits for the
// reply to its running write before giving the write turn back anyway.
const drainTimeout = 2 * time.Minute

func (p *pair) holding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held != nil
}

func (p *pair) release(responseTo int32, always bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil && (always || responseTo == p.waitFor) {
		p.held()
		p.held = nil
		took := time.Since(p.heldAt)
		p.f.add(p.heldNS+" write_turn_us", took.Microseconds())
		if !p.slow.Stop() {
			p.f.log.Warn("standin: slow write done", "ns", p.heldNS, "command", p.heldCmd, "took", took.Round(time.Millisecond), "answered", !always)
		}
	}
}

// readMsg reads one whole wire message (header included) into buf.
func readMsg(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n < headerLen || n > maxMsgLen {
		return nil, fmt.Errorf("standin: bad message length %d", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return nil, err
	}
	return buf, nil
}

// commandOf returns the command name of an OP_MSG (the first key of its body
// document) and whether the sender expects a reply (moreToCome unset).
// Other opcodes (OP_QUERY hello of old drivers) are no writes: "", true.
func commandOf(msg []byte) (name string, reply bool) {
	if len(msg) < headerLen+4 || int32(binary.LittleEndian.Uint32(msg[12:16])) != opMsg {
		return "", true
	}
	reply = binary.LittleEndian.Uint32(msg[16:20])&flagMoreToCome == 0
	doc := bodyOf(msg)
	if len(doc) < 6 || doc[4] == 0 { // body: a BSON document; its first element names the command
		return "", reply
	}
	key := doc[5:]
	if j := indexByte(key, 0); j >= 0 {
		return string(key[:j]), reply
	}
	return "", reply
}

// namespaceOf returns "db.collection" of a write command in an OP_MSG: the
// string value of the body's first element (the collection) and of its "$db"
// element. A message it cannot parse (never sent by a conforming driver:
// both are required strings) maps to "", so such writes are still serialised
// among themselves.
func namespaceOf(msg []byte) string {
	doc := bodyOf(msg)
	if doc == nil {
		return ""
	}
	var coll, db string
	first := true
	for i := 4; i < len(doc)-1; {
		typ := doc[i]
		i++
		j := indexByte(doc[i:], 0)
		if j < 0 {
			return ""
		}
		key := string(doc[i : i+j])
		i += j + 1
		if typ == 0x02 && (first || key == "$db") {
			v, ok := bsonString(doc[i:])
			if !ok {
				return ""
			}
			if first {
				coll = v
			} else {
				db = v
			}
		}
		if !first && key == "$db" {
			break
		}
		first = false
		n := bsonValueLen(typ, doc[i:])
		if n < 0 {
			return ""
		}
		i += n
	}
	if coll == "" || db == "" {
		return ""
	}
	return db + "." + coll
}

// bodyOf returns the body document (section kind 0) of an OP_MSG, or nil.
func bodyOf(msg []byte) []byte {
	var body []byte
	eachSection(msg, func(kind byte, data []byte) bool {
		if kind == 0 {
			body = data
			return false
		}
		return true
	})
	return body
}

// eachSection calls f with each section of an OP_MSG (its kind and its
// bytes, size included) until f returns false; it reports false if msg is
// not a well-formed OP_MSG as far as it read.
func eachSection(msg []byte, f func(kind byte, data []byte) bool) bool {
	if len(msg) < headerLen+4 || int32(binary.LittleEndian.Uint32(msg[12:16])) != opMsg {
		return false
	}
	end := len(msg)
	if binary.LittleEndian.Uint32(msg[16:20])&flagChecksum != 0 {
		end -= 4
	}
	for i := headerLen + 4; i < end; {
		kind := msg[i]
		i++
		if i+4 > end {
			return false
		}
		size := int(binary.LittleEndian.Uint32(msg[i : i+4]))
		if size < 5 || i+size > end {
			return false
		}
		if !f(kind, msg[i:i+size]) {
			return true
		}
		i += size // kind 1: document sequence, size includes itself
	}
	return true
}

// bsonString decodes a BSON string value (int32 length incl. NUL, bytes, NUL).
func bsonString(b []byte) (string, bool) {
	if len(b) < 4 {
		return "", false
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n < 1 || 4+n > len(b) {
		return "", false
	}
	return string(b[4 : 4+n-1]), true
}

// bsonValueLen returns the encoded length of a BSON value of type typ at the
// start of b, or -1 if it is malformed or of an unknown type.
func bsonValueLen(typ byte, b []byte) int {
	i32 := func() int {
		if len(b) < 4 {
			return -1
		}
		return int(int32(binary.LittleEndian.Uint32(b)))
	}
	var n int
	switch typ {
	case 0x06, 0x0A, 0x7F, 0xFF: // undefined, null, maxKey, minKey
		n = 0
	case 0x08: // bool
		n = 1
	case 0x10: // int32
		n = 4
	case 0x01, 0x09, 0x11, 0x12: // double, datetime, timestamp, int64
		n = 8
	case 0x07: // ObjectId
		n = 12
	case 0x13: // decimal128
		n = 16
	case 0x02, 0x0D, 0x0E: // string, JavaScript, symbol
		if n = i32(); n >= 0 {
			n += 4
		}
	case 0x03, 0x04, 0x0F: // document, array, code with scope: size includes itself
		n = i32()
	case 0x05: // binary: size, subtype, bytes
		if n = i32(); n >= 0 {
			n += 5
		}
	case 0x0C: // DBPointer: string + ObjectId
		if n = i32(); n >= 0 {
			n += 4 + 12
		}
	case 0x0B: // regex: two cstrings
		j := indexByte(b, 0)
		if j < 0 {
			return -1
		}
		k := indexByte(b[j+1:], 0)
		if k < 0 {
			return -1
		}
		n = j + 1 + k + 1
	default:
		return -1
	}
	if n < 0 || n > len(b) {
		return -1
	}
	return n
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// logCounts logs the counted commands every interval until the front closes.
func (f *front) logCounts(every time.Duration) {
	defer f.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.done:
			return
		case <-t.C:
		}
		c := f.takeCounts()
		if len(c) == 0 {
			continue
		}
		keys := make([]string, 0, len(c))
		for k := range c {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attrs := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			attrs = append(attrs, k, c[k])
		}
		f.log.Info("standin: commands", attrs...)
	}
}
