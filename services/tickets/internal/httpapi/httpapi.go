// Package httpapi is the HTTP port of the tickets service: /api/tickets.
//
// Concurrent edits (PUT): the store re-runs an edit on the newest version
// when another write got in first, so two PUTs without a version both apply,
// in turn, each with its own version; no edit is lost and none overwrites
// the other unseen, because each is a whole title+price replacement made on
// the state it reads. A client that wants "edit only what I saw" sends the
// version it edited, as the body field "version" or as "If-Match" (the ETag
// that GET and PUT answer is the version): when the ticket moved on, the PUT
// answers 409 and changes nothing. Exactly one PUT per version succeeds.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/services/tickets/internal/domain"
)

// List limits of GET /api/tickets?limit=.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// maxBody bounds a ticket's request body. A ticket is a title and a price;
// the bound also keeps every ticket event far below the NATS message limit,
// so an event can never be too large to publish.
const maxBody = 16 << 10

// Tickets is what the API needs of the ticket store.
type Tickets interface {
	Create(ctx context.Context, t domain.Ticket) (domain.Ticket, error)
	Get(ctx context.Context, id string) (domain.Ticket, error)
	List(ctx context.Context, limit int) ([]domain.Ticket, error)
	Update(ctx context.Context, id string, fn func(*domain.Ticket) error) (domain.Ticket, error)
}

// API serves /api/tickets.
type API struct {
	tickets Tickets
	key     []byte
	log     *slog.Logger
}

// New returns the API over tickets; key verifies the session JWT.
func New(tickets Tickets, key []byte, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	return &API{tickets: tickets, key: key, log: log}
}

// Mount adds the routes to r (the service's base router, httpx.NewRouter).
func (a *API) Mount(r chi.Router) {
	r.Route("/api/tickets", func(r chi.Router) {
		r.Use(auth.CurrentUser(a.key))
		r.Get("/", a.list)
		r.Get("/{id}", a.get)
		r.With(auth.RequireAuth).Post("/", a.create)
		r.With(auth.RequireAuth).Put("/{id}", a.update)
	})
}

// ticketJSON is a ticket as the API shows it: {id,title,price,userId,version,orderId?}.
type ticketJSON struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	UserID  string  `json:"userId"`
	Version int64   `json:"version"`
	OrderID string  `json:"orderId,omitempty"`
}

func toJSON(t domain.Ticket) ticketJSON {
	return ticketJSON{ID: t.ID, Title: t.Title, Price: t.Price, UserID: t.UserID, Version: t.Version, OrderID: t.OrderID}
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, a.log, err)
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	limit := DefaultLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			a.fail(w, r, apperr.Field("limit", "Limit must be an integer from 1 to "+strconv.Itoa(MaxLimit)))
			return
		}
		limit = n
	}
	ts, err := a.tickets.List(r.Context(), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]ticketJSON, len(ts))
	for i, t := range ts {
		out[i] = toJSON(t)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	t, err := a.tickets.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeTicket(w, http.StatusOK, t)
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	user, _ := auth.UserFrom(r.Context())
	in, _, err := decodeInput(r, false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	t, err := domain.New(user.ID, in)
	if err == nil {
		t, err = a.tickets.Create(r.Context(), t)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeTicket(w, http.StatusCreated, t)
}

func (a *API) update(w http.ResponseWriter, r *http.Request) {
	user, _ := auth.UserFrom(r.Context())
	in, expect, err := decodeInput(r, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	t, err := a.tickets.Update(r.Context(), chi.URLParam(r, "id"), func(t *domain.Ticket) error {
		if err := t.Edit(user.ID, in); err != nil {
			return err
		}
		// After the owner and reserved checks: a stranger learns nothing
		// about the ticket's version.
		if expect != nil {
			return t.ExpectVersion(*expect)
		}
		return nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeTicket(w, http.StatusOK, t)
}

func writeTicket(w http.ResponseWriter, status int, t domain.Ticket) {
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(t.Version, 10)))
	httpx.WriteJSON(w, status, toJSON(t))
}

// body is decoded loosely (raw values) so that a value of the wrong type is
// reported with the field's own message, as the original app does, rather
// than as a decoding error.
type body struct {
	Title   json.RawMessage `json:"title"`
	Price   json.RawMessage `json:"price"`
	Version json.RawMessage `json:"version"`
}

// decodeInput reads {title, price} and, when withVersion, the version the
// client edited (body "version", else the If-Match header; nil when neither).
// Body-level problems (type, size, malformed JSON) come from httpx.Decode;
// field problems are all reported at once.
func decodeInput(r *http.Request, withVersion bool) (domain.Input, *int64, error) {
	var b body
	if err := httpx.Decode(r, &b, maxBody); err != nil {
		return domain.Input{}, nil, err
	}
	in := domain.Input{Title: jsonString(b.Title), Price: jsonNumber(b.Price)}
	verr := in.Validate()
	var expect *int64
	if withVersion {
		v, err := expectedVersion(b.Version, r.Header.Get("If-Match"))
		if err != nil {
			var fields []apperr.FieldError
			if e, ok := verr.(*apperr.Error); ok {
				fields = e.Fields
			}
			return in, nil, apperr.Fields(append(fields, err.Fields...)...)
		}
		expect = v
	}
	return in, expect, verr
}

// jsonString is the value of a JSON string, "" for anything else.
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// jsonNumber is the value of a JSON number, or of a string holding one (the
// original app's client sends the price as a string, "20.00", and the
// original accepts it); 0, which validation refuses, for anything else.
func jsonNumber(raw json.RawMessage) float64 {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0
		}
		raw = []byte(strings.TrimSpace(s))
	}
	// Only the JSON number grammar: no "NaN", "Inf", hex or true.
	var n json.Number
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) || json.Unmarshal(raw, &n) != nil {
		return 0
	}
	f, err := n.Float64()
	if err != nil {
		return 0
	}
	return f
}

const msgVersion = "Version must be a whole number of at least 0"

func expectedVersion(raw json.RawMessage, ifMatch string) (*int64, *apperr.Error) {
	if len(raw) > 0 && string(raw) != "null" {
		var v int64
		if json.Unmarshal(raw, &v) != nil || v < 0 {
			return nil, apperr.Field("version", msgVersion)
		}
		return &v, nil
	}
	ifMatch = strings.TrimSpace(ifMatch)
	if ifMatch == "" || ifMatch == "*" {
		return nil, nil
	}
	tag := strings.Trim(strings.TrimPrefix(ifMatch, "W/"), `"`)
	v, err := strconv.ParseInt(tag, 10, 64)
	if err != nil || v < 0 {
		return nil, apperr.Field("If-Match", "If-Match must be a ticket version (its ETag)")
	}
	return &v, nil
}
