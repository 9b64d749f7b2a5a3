package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// API is an HTTP client of the ticketing services.
type API struct {
	Auth, Tickets, Orders string // base URLs (scheme://host:port)
	HC                    *http.Client
}

// NewHTTPClient returns a client that keeps enough idle connections for
// maxConc concurrent workers (the default of 2 per host would make most
// requests open a new connection).
func NewHTTPClient(maxConc int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * maxConc,
		MaxIdleConnsPerHost: 2 * maxConc,
		IdleConnTimeout:     60 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// Session is a signed-in user (the JWT of the session cookie).
type Session struct{ Cookie string }

// Ticket is the subset of the ticket JSON the bench needs.
type Ticket struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	OrderID string `json:"orderId"`
}

// Order is the subset of the order JSON the bench needs.
type Order struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// StatusError is an unexpected HTTP status.
type StatusError struct {
	Method, Path string
	Code         int
	Body         string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Code, strings.TrimSpace(e.Body))
}

func (a *API) do(ctx context.Context, s *Session, method, base, path string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s != nil {
		req.AddCookie(&http.Cookie{Name: "session", Value: s.Cookie})
	}
	resp, err := a.HC.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return &StatusError{method, path, resp.StatusCode, string(b)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// SignUp creates a user and returns its session.
func (a *API) SignUp(ctx context.Context, email, password string) (*Session, error) {
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.Auth+"/api/users/signup", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.HC.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusCreated {
		return nil, &StatusError{"POST", "/api/users/signup", resp.StatusCode, string(body)}
	}
	for _, c := range resp.Cookies() {
		if c.Name == "session" && c.Value != "" {
			return &Session{Cookie: c.Value}, nil
		}
	}
	return nil, fmt.Errorf("signup: no session cookie")
}

// CreateTicket posts a ticket.
func (a *API) CreateTicket(ctx context.Context, s *Session, title string, price float64) (Ticket, error) {
	var t Ticket
	err := a.do(ctx, s, http.MethodPost, a.Tickets, "/api/tickets", map[string]any{"title": title, "price": price}, http.StatusCreated, &t)
	return t, err
}

// GetTicket reads a ticket.
func (a *API) GetTicket(ctx context.Context, id string) (Ticket, error) {
	var t Ticket
	err := a.do(ctx, nil, http.MethodGet, a.Tickets, "/api/tickets/"+id, nil, http.StatusOK, &t)
	return t, err
}

// UpdateTicket puts a new title and price and returns the new version.
func (a *API) UpdateTicket(ctx context.Context, s *Session, id, title string, price float64) (Ticket, error) {
	var t Ticket
	err := a.do(ctx, s, http.MethodPut, a.Tickets, "/api/tickets/"+id, map[string]any{"title": title, "price": price}, http.StatusOK, &t)
	return t, err
}

// CreateOrder reserves a ticket.
func (a *API) CreateOrder(ctx context.Context, s *Session, ticketID string) (Order, error) {
	var o Order
	err := a.do(ctx, s, http.MethodPost, a.Orders, "/api/orders", map[string]any{"ticketId": ticketID}, http.StatusCreated, &o)
	return o, err
}

// CancelOrder deletes (cancels) an order.
func (a *API) CancelOrder(ctx context.Context, s *Session, id string) error {
	return a.do(ctx, s, http.MethodDelete, a.Orders, "/api/orders/"+id, nil, http.StatusNoContent, nil)
}

// Ready polls url until it answers 200 or ctx ends.
func Ready(ctx context.Context, hc *http.Client, url string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %d", url, resp.StatusCode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
