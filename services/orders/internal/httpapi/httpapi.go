// Package httpapi is the HTTP port of the orders service: /api/orders on the
// common base router, every error in the common JSON format.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/services/orders/internal/domain"
)

// Store is what the API needs from storage.
type Store interface {
	NewID() string
	Ticket(ctx context.Context, id string) (domain.Ticket, error)
	Create(ctx context.Context, o *domain.Order) error
	Order(ctx context.Context, id string) (*domain.Order, error)
	ListByUser(ctx context.Context, userID string) ([]*domain.Order, error)
	Update(ctx context.Context, id string, fn func(*domain.Order) error) error
}

// Options configures the API.
type Options struct {
	Store            Store
	JWTKey           []byte
	ExpirationWindow time.Duration
	Log              *slog.Logger
	Now              func() time.Time // time.Now when nil
}

// API serves /api/orders.
type API struct {
	Options
}

// New returns the API.
func New(o Options) *API {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &API{o}
}

// Mount adds the routes to r (the base router, httpx.NewRouter).
func (a *API) Mount(r chi.Router) {
	r.Route("/api/orders", func(r chi.Router) {
		r.Use(auth.CurrentUser(a.JWTKey), auth.RequireAuth)
		r.Post("/", a.create)
		r.Get("/", a.list)
		r.Get("/{id}", a.get)
		r.Delete("/{id}", a.cancel)
	})
}

// TicketJSON and OrderJSON are the response bodies.
type TicketJSON struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	Version int64   `json:"version"`
}

type OrderJSON struct {
	ID        string     `json:"id"`
	UserID    string     `json:"userId"`
	Status    string     `json:"status"`
	ExpiresAt string     `json:"expiresAt"`
	Version   int64      `json:"version"`
	Ticket    TicketJSON `json:"ticket"`
}

func toJSON(o *domain.Order) OrderJSON {
	return OrderJSON{
		ID: o.ID, UserID: o.UserID, Status: string(o.Status),
		ExpiresAt: o.ExpiresAt.UTC().Format(time.RFC3339), Version: o.Version,
		Ticket: TicketJSON{ID: o.Ticket.ID, Title: o.Ticket.Title, Price: o.Ticket.Price, Version: o.Ticket.Version},
	}
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, a.Log, err)
}

func userID(r *http.Request) string {
	u, _ := auth.UserFrom(r.Context()) // RequireAuth guarantees a user
	return u.ID
}

type createRequest struct {
	TicketID any `json:"ticketId"` // any: a number or null is "must be provided", not a type error
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := httpx.Decode(r, &req, 0); err != nil {
		a.fail(w, r, err)
		return
	}
	ticketID, _ := req.TicketID.(string)
	if _, ok := mongox.ObjectID(ticketID); !ok {
		a.fail(w, r, domain.ErrTicketIDRequired)
		return
	}
	t, err := a.Store.Ticket(r.Context(), ticketID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	o := domain.NewOrder(a.Store.NewID(), userID(r), t, a.Now(), a.ExpirationWindow)
	if err := a.Store.Create(r.Context(), o); err != nil {
		a.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, toJSON(o))
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	os, err := a.Store.ListByUser(r.Context(), userID(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]OrderJSON, 0, len(os))
	for _, o := range os {
		out = append(out, toJSON(o))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	o, err := a.Store.Order(r.Context(), chi.URLParam(r, "id"))
	if err == nil {
		err = o.CheckOwner(userID(r))
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, toJSON(o))
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	uid := userID(r)
	err := a.Store.Update(r.Context(), chi.URLParam(r, "id"), func(o *domain.Order) error {
		if err := o.CheckOwner(uid); err != nil {
			return err
		}
		return o.Cancel()
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
