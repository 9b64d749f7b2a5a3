package app

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
)

// TestDatabaseDown: when MongoDB becomes unreachable under a running
// service, a payment answers 503 (retry later), not 500, and charges nothing.
func TestDatabaseDown(t *testing.T) {
	var mongo *tcpProxy
	h := mustStartPayments(t, func(c *Config) {
		mongo = mustTCPProxy(t, c.MongoURI)
		c.MongoURI = mongo.uri
	})
	orderID := h.order(t, "u1", 10)
	mongo.cut()
	before := len(h.stripe.Calls())
	r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa"))
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("pay while MongoDB is unreachable = %d %s, want 503", r.Status, r.Raw)
	}
	if len(h.stripe.Calls()) != before {
		t.Fatal("charged while the order could not be claimed")
	}
	// Refused input is still refused as such.
	if r := h.pay(t, "u1", "application/json", `{}`); r.Status != http.StatusBadRequest {
		t.Fatalf("empty payment while MongoDB is unreachable = %d %s, want 400", r.Status, r.Raw)
	}
}

// tcpProxy forwards connections to a MongoDB server until cut, which closes
// the listener and every connection: the server looks gone.
type tcpProxy struct {
	uri string
	ln  net.Listener

	mu    sync.Mutex
	conns []net.Conn
	gone  bool
}

func mustTCPProxy(tb testing.TB, mongoURI string) *tcpProxy {
	tb.Helper()
	u, err := url.Parse(mongoURI)
	if err != nil {
		tb.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u.Host = ln.Addr().String()
	p := &tcpProxy{uri: u.String(), ln: ln}
	tb.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, s) {
				return
			}
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gone = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
