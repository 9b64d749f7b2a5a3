// Package api is the web client's side of the public HTTP API: one method
// per call a page makes. Every call is made as the user's browser would
// make it, to the same public routes, with the user's session cookie (the
// Session) and a JSON body: the client has no access a browser lacks.
//
// An answer other than 2xx is an *Error carrying the API's status and its
// messages (the common body {"errors":[{"message","field"}]}); a service
// that does not answer is an *Error too (status 502), so that every
// failure reaches the page as a readable message.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// CookieName is the session cookie the auth service sets (common/auth).
const CookieName = "session"

// maxResponse bounds a response body read from the API.
const maxResponse = 4 << 20

// Bases are the base URLs of the four APIs (often all the same: the
// ingress or the local proxy).
type Bases struct {
	Auth, Tickets, Orders, Payments string
}

// Client calls the API.
type Client struct {
	bases Bases
	hc    *http.Client
}

// New returns a client of the API at bases; timeout bounds one call.
func New(bases Bases, timeout time.Duration) *Client {
	return &Client{bases: bases, hc: &http.Client{
		Timeout: timeout,
		// The API's redirects (none today) are the browser's business: the
		// client never follows one with the user's cookie to elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Session is what the client forwards of the browser's request.
type Session struct {
	Token     string // the session cookie's value; "" when signed out
	ForwardIP string // X-Forwarded-For to send: the browser's chain and address
	RequestID string // the client's request id, sent as X-Request-Id
}

// FieldError is one message of the API's error body.
type FieldError struct {
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Error is a failed call: the API's status and messages.
type Error struct {
	Status int
	Errors []FieldError
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Message
	}
	return fmt.Sprintf("%d %s", e.Status, strings.Join(msgs, "; "))
}

// Fields returns the messages about one field, by field name.
func (e *Error) Fields() map[string]string {
	out := map[string]string{}
	for _, fe := range e.Errors {
		if fe.Field != "" {
			if prev, ok := out[fe.Field]; ok {
				out[fe.Field] = prev + " " + fe.Message
			} else {
				out[fe.Field] = fe.Message
			}
		}
	}
	return out
}

// General returns the messages about no field, joined.
func (e *Error) General() string {
	var msgs []string
	for _, fe := range e.Errors {
		if fe.Field == "" {
			msgs = append(msgs, fe.Message)
		}
	}
	return strings.Join(msgs, " ")
}

// AsError returns err as an *Error; any other error (a bug) becomes a 500
// with a generic message, so a page still has something to say.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Errors: []FieldError{{Message: "Something went wrong"}}}
}

// Status returns the status of err's *Error (0 when err is nil).
func Status(err error) int {
	if err == nil {
		return 0
	}
	return AsError(err).Status
}

// User is the signed-in user.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// Ticket is a ticket as GET /api/tickets/{id} answers it.
type Ticket struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	UserID  string  `json:"userId"`
	Version int64   `json:"version"`
	OrderID string  `json:"orderId,omitempty"`
}

// Order is an order with its ticket.
type Order struct {
	ID        string    `json:"id"`
	UserID    string    `json:"userId"`
	Status    string    `json:"status"`
	ExpiresAt time.Time `json:"expiresAt"`
	Version   int64     `json:"version"`
	Ticket    struct {
		ID      string  `json:"id"`
		Title   string  `json:"title"`
		Price   float64 `json:"price"`
		Version int64   `json:"version"`
	} `json:"ticket"`
}

// Payment is a payment's id.
type Payment struct {
	ID string `json:"id"`
}

// service names, for the message when one does not answer.
const (
	auth     = "auth"
	tickets  = "tickets"
	orders   = "orders"
	payments = "payments"
)

func (c *Client) base(service string) string {
	switch service {
	case auth:
		return c.bases.Auth
	case tickets:
		return c.bases.Tickets
	case orders:
		return c.bases.Orders
	default:
		return c.bases.Payments
	}
}

// do sends one request and decodes a 2xx JSON answer into out (when not
// nil); it returns the response's Set-Cookie lines (auth's calls relay
// them to the browser).
func (c *Client) do(ctx context.Context, s Session, service, method, path string, body, out any) ([]string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base(service)+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.Token != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: s.Token})
	}
	if s.ForwardIP != "" {
		req.Header.Set("X-Forwarded-For", s.ForwardIP)
	}
	if s.RequestID != "" {
		req.Header.Set("X-Request-Id", s.RequestID)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &Error{Status: http.StatusGatewayTimeout, Errors: []FieldError{{Message: "The request was cancelled"}}}
		}
		return nil, &Error{Status: http.StatusBadGateway, Errors: []FieldError{{
			Message: "The " + service + " service is not reachable right now; please try again in a moment."}}}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if err != nil {
		return nil, &Error{Status: http.StatusBadGateway, Errors: []FieldError{{
			Message: "The " + service + " service's answer was cut off; please try again."}}}
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, decodeError(service, res, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, &Error{Status: http.StatusBadGateway, Errors: []FieldError{{
				Message: "The " + service + " service gave an answer the client does not understand."}}}
		}
	}
	return res.Header.Values("Set-Cookie"), nil
}

// decodeError turns an error answer into an *Error; a body that is not the
// common error format (a proxy's HTML page) still gives a message.
func decodeError(service string, res *http.Response, raw []byte) *Error {
	var body struct {
		Errors []FieldError `json:"errors"`
	}
	e := &Error{Status: res.StatusCode}
	if json.Unmarshal(raw, &body) == nil {
		for _, fe := range body.Errors {
			if fe.Message != "" {
				e.Errors = append(e.Errors, fe)
			}
		}
	}
	if len(e.Errors) == 0 {
		msg := "The " + service + " service answered " + strconv.Itoa(res.StatusCode) + " " + http.StatusText(res.StatusCode) + "."
		e.Errors = []FieldError{{Message: msg}}
	}
	if ra := res.Header.Get("Retry-After"); ra != "" && res.StatusCode == http.StatusServiceUnavailable {
		e.Errors = append(e.Errors, FieldError{Message: "Please try again in " + ra + " s."})
	}
	return e
}

// Credentials is the body of sign up and sign in.
type Credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// CurrentUser returns the session's user, nil when signed out.
func (c *Client) CurrentUser(ctx context.Context, s Session) (*User, error) {
	if s.Token == "" {
		return nil, nil
	}
	var out struct {
		CurrentUser *User `json:"currentUser"`
	}
	_, err := c.do(ctx, s, auth, http.MethodGet, "/api/users/currentuser", nil, &out)
	return out.CurrentUser, err
}

// SignUp creates an account; it returns the Set-Cookie lines of the session.
func (c *Client) SignUp(ctx context.Context, s Session, cr Credentials) ([]string, error) {
	return c.do(ctx, s, auth, http.MethodPost, "/api/users/signup", cr, nil)
}

// SignIn signs in; it returns the Set-Cookie lines of the session.
func (c *Client) SignIn(ctx context.Context, s Session, cr Credentials) ([]string, error) {
	return c.do(ctx, s, auth, http.MethodPost, "/api/users/signin", cr, nil)
}

// SignOut returns the Set-Cookie lines that clear the session.
func (c *Client) SignOut(ctx context.Context, s Session) ([]string, error) {
	return c.do(ctx, s, auth, http.MethodPost, "/api/users/signout", struct{}{}, nil)
}

// ListTickets returns the tickets for sale (not reserved), newest first.
func (c *Client) ListTickets(ctx context.Context, s Session, limit int) ([]Ticket, error) {
	var out []Ticket
	_, err := c.do(ctx, s, tickets, http.MethodGet, "/api/tickets?limit="+strconv.Itoa(limit), nil, &out)
	return out, err
}

// GetTicket returns one ticket.
func (c *Client) GetTicket(ctx context.Context, s Session, id string) (Ticket, error) {
	var out Ticket
	_, err := c.do(ctx, s, tickets, http.MethodGet, "/api/tickets/"+pathID(id), nil, &out)
	return out, err
}

// TicketInput is a ticket's title and price as the form gave them. Price
// is sent as a JSON number when it reads as one and as the typed text
// otherwise, so that the API, not the client, judges it and says why.
type TicketInput struct {
	Title   string
	Price   string
	Version *int64 // edit only this version (409 when it moved on)
}

func (in TicketInput) body() map[string]any {
	b := map[string]any{"title": in.Title}
	p := strings.TrimSpace(in.Price)
	if f, err := strconv.ParseFloat(p, 64); err == nil {
		b["price"] = json.Number(strconv.FormatFloat(f, 'f', -1, 64))
	} else if p != "" {
		b["price"] = p
	}
	if in.Version != nil {
		b["version"] = *in.Version
	}
	return b
}

// CreateTicket sells a ticket.
func (c *Client) CreateTicket(ctx context.Context, s Session, in TicketInput) (Ticket, error) {
	var out Ticket
	_, err := c.do(ctx, s, tickets, http.MethodPost, "/api/tickets", in.body(), &out)
	return out, err
}

// UpdateTicket edits a ticket.
func (c *Client) UpdateTicket(ctx context.Context, s Session, id string, in TicketInput) (Ticket, error) {
	var out Ticket
	_, err := c.do(ctx, s, tickets, http.MethodPut, "/api/tickets/"+pathID(id), in.body(), &out)
	return out, err
}

// ListOrders returns the user's orders, newest first.
func (c *Client) ListOrders(ctx context.Context, s Session) ([]Order, error) {
	var out []Order
	_, err := c.do(ctx, s, orders, http.MethodGet, "/api/orders", nil, &out)
	return out, err
}

// GetOrder returns one of the user's orders.
func (c *Client) GetOrder(ctx context.Context, s Session, id string) (Order, error) {
	var out Order
	_, err := c.do(ctx, s, orders, http.MethodGet, "/api/orders/"+pathID(id), nil, &out)
	return out, err
}

// CreateOrder reserves a ticket.
func (c *Client) CreateOrder(ctx context.Context, s Session, ticketID string) (Order, error) {
	var out Order
	_, err := c.do(ctx, s, orders, http.MethodPost, "/api/orders", map[string]string{"ticketId": ticketID}, &out)
	return out, err
}

// CancelOrder cancels an order.
func (c *Client) CancelOrder(ctx context.Context, s Session, id string) error {
	_, err := c.do(ctx, s, orders, http.MethodDelete, "/api/orders/"+pathID(id), nil, nil)
	return err
}

// Pay pays for an order with a Stripe payment method or token.
func (c *Client) Pay(ctx context.Context, s Session, orderID, token string) (Payment, error) {
	var out Payment
	_, err := c.do(ctx, s, payments, http.MethodPost, "/api/payments", map[string]string{"orderId": orderID, "token": token}, &out)
	return out, err
}

// pathID escapes an id taken from the page's URL: whatever it is, it stays
// one path segment of the API's route (the API answers 404 for a bad one).
func pathID(id string) string {
	return url.PathEscape(id)
}
