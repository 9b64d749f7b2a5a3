package standin

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
)

// Wire protocol constants (MongoDB wire protocol).
const (
	opMsg          = 2013
	headerLen      = 16
	maxMsgLen      = 48_000_000 + 16*1024*1024 // maxMessageSizeBytes plus slack
	flagChecksum   = 1 << 0
	flagMoreToCome = 1 << 1
)

// writeCommands are serialised: FerretDB v1 runs the read and the write of a
// conditional update without isolation, so concurrent conditional writes on
// one document can all succeed. MongoDB lets exactly one through.
var writeCommands = map[string]bool{
	"insert":        true,
	"update":        true,
	"delete":        true,
	"findandmodify": true,
}

// front is a MongoDB wire-protocol proxy: every client connection gets its
// own backend connection; messages are forwarded unchanged, but only one
// write command is in flight at a time, from sending the request to
// receiving its reply. Reads stay parallel.
type front struct {
	ln      net.Listener
	backend string // TCP address of FerretDB
	log     *slog.Logger

	writeSem chan struct{} // capacity 1: the write token

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newFront(ln net.Listener, backend string, log *slog.Logger) *front {
	return &front{ln: ln, backend: backend, log: log, writeSem: make(chan struct{}, 1), conns: map[net.Conn]struct{}{}}
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

	mu      sync.Mutex
	held    bool  // this pair holds the write token
	waitFor int32 // requestID whose reply releases it
	done    chan struct{}
}

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
	p := &pair{f: f, client: client, backend: backend, done: make(chan struct{})}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(p.done)
			client.Close()
			backend.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer stop(); p.requests() }()
	go func() { defer wg.Done(); defer stop(); p.replies() }()
	wg.Wait()
	p.release(0, true)
	f.untrack(client)
	f.untrack(backend)
}

// requests forwards client messages to the backend, taking the write token
// before a write command that expects a reply.
func (p *pair) requests() {
	buf := make([]byte, 0, 4096)
	for {
		msg, err := readMsg(p.client, buf)
		if err != nil {
			return
		}
		buf = msg[:0]
		if name, reply := commandOf(msg); reply && writeCommands[strings.ToLower(name)] {
			select {
			case p.f.writeSem <- struct{}{}:
			case <-p.done:
				return
			}
			p.mu.Lock()
			p.held, p.waitFor = true, int32(binary.LittleEndian.Uint32(msg[4:8]))
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
		if _, err := p.client.Write(msg); err != nil {
			return
		}
	}
}

func (p *pair) release(responseTo int32, always bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held && (always || responseTo == p.waitFor) {
		p.held = false
		<-p.f.writeSem
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
	flags := binary.LittleEndian.Uint32(msg[16:20])
	reply = flags&flagMoreToCome == 0
	end := len(msg)
	if flags&flagChecksum != 0 {
		end -= 4
	}
	for i := headerLen + 4; i < end; {
		kind := msg[i]
		i++
		if i+4 > end {
			return "", reply
		}
		size := int(binary.LittleEndian.Uint32(msg[i : i+4]))
		if size < 5 || i+size > end {
			return "", reply
		}
		if kind == 0 { // body: a BSON document; its first element names the command
			doc := msg[i : i+size]
			if doc[4] == 0 {
				return "", reply
			}
			key := doc[5:]
			if j := indexByte(key, 0); j >= 0 {
				return string(key[:j]), reply
			}
			return "", reply
		}
		i += size // kind 1: document sequence, size includes itself
	}
	return "", reply
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
