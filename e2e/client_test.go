package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Client drives the system over HTTP, spreading requests over the replicas.
type Client struct {
	s  *System
	hc *http.Client
	rr atomic.Uint64
}

// NewClient returns a client of s.
func NewClient(s *System) *Client {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second}
	return &Client{s: s, hc: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// User is a signed-up user.
type User struct {
	Email, Cookie string
}

// Resp is an HTTP response read in full.
type Resp struct {
	Code int
	Body []byte
	Err  error // transport error (connection refused, reset...)
}

func (r Resp) String() string {
	if r.Err != nil {
		return "transport error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %s", r.Code, strings.TrimSpace(string(r.Body)))
}

// Decode unmarshals the body into v.
func (r Resp) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
}

// ErrorMessage is the first message of a common-format error body.
func (r Resp) ErrorMessage() string {
	var e struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	if json.Unmarshal(r.Body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Message
}

func (c *Client) pick(nodes []*Node) string {
	return nodes[c.rr.Add(1)%uint64(len(nodes))].URL
}

// Do sends a request to base+path as u (nil: anonymous).
func (c *Client) Do(ctx context.Context, u *User, method, base, path string, body any) Resp {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return Resp{Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u != nil {
		req.AddCookie(&http.Cookie{Name: "session", Value: u.Cookie})
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Resp{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Resp{Code: resp.StatusCode, Body: b, Err: err}
}

// Tickets sends to one of the tickets replicas.
func (c *Client) Tickets(ctx context.Context, u *User, method, path string, body any) Resp {
	return c.Do(ctx, u, method, c.pick(c.s.Tickets), path, body)
}

// Orders sends to one of the orders replicas.
func (c *Client) Orders(ctx context.Context, u *User, method, path string, body any) Resp {
	return c.Do(ctx, u, method, c.pick(c.s.Orders), path, body)
}

// SignUp creates a user.
func (c *Client) SignUp(t testing.TB) *User {
	t.Helper()
	u := &User{Email: fmt.Sprintf("user-%d@example.com", rand.Uint64())}
	b, _ := json.Marshal(map[string]string{"email": u.Email, "password": "secret-pw"})
	resp, err := c.hc.Post(c.s.Auth.URL+"/api/users/signup", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("signup: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("signup: %d %s", resp.StatusCode, body)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "session" && ck.Value != "" {
			u.Cookie = ck.Value
			return u
		}
	}
	t.Fatalf("signup: no session cookie")
	return nil
}

// Ticket is the ticket JSON.
type Ticket struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	UserID  string  `json:"userId"`
	Version int64   `json:"version"`
	OrderID string  `json:"orderId"`
}

// Order is the order JSON.
type Order struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Version int64  `json:"version"`
	Ticket  Ticket `json:"ticket"`
}

// CreateTicket posts a ticket and fails the test on anything but 201.
func (c *Client) CreateTicket(t testing.TB, u *User, title string, price float64) Ticket {
	t.Helper()
	r := c.Tickets(context.Background(), u, http.MethodPost, "/api/tickets", map[string]any{"title": title, "price": price})
	if r.Code != http.StatusCreated {
		t.Fatalf("create ticket: %s", r)
	}
	var tk Ticket
	r.Decode(t, &tk)
	return tk
}

// Eventually polls cond every interval until it returns true or the deadline
// passes (then the test fails with what() describing the last state). It
// returns how long it took.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, what func() string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// ReserveWhenKnown posts an order for ticketID, retrying while orders does
// not know the ticket yet (404: its ticket:created is on the way).
func (c *Client) ReserveWhenKnown(t testing.TB, u *User, ticketID string) Order {
	t.Helper()
	var last Resp
	Eventually(t, 30*time.Second, func() bool {
		last = c.Orders(context.Background(), u, http.MethodPost, "/api/orders", map[string]any{"ticketId": ticketID})
		return last.Code != http.StatusNotFound && last.Err == nil
	}, func() string { return "orders never knew ticket " + ticketID + ": " + last.String() })
	if last.Code != http.StatusCreated {
		t.Fatalf("reserve %s: %s", ticketID, last)
	}
	var o Order
	last.Decode(t, &o)
	return o
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
