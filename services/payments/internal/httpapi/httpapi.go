// Package httpapi is the HTTP port of the payments service: POST /api/payments.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/services/payments/internal/domain"
)

// Payer is the use case the API needs.
type Payer interface {
	Pay(ctx context.Context, userID, orderID, token string) (domain.Payment, error)
}

// API serves /api/payments.
type API struct {
	payer Payer
	key   []byte
	log   *slog.Logger
}

// New returns the API over payer; key verifies the session JWT.
func New(payer Payer, key []byte, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	return &API{payer: payer, key: key, log: log}
}

// Mount adds the routes to r (the base router, httpx.NewRouter).
func (h *API) Mount(r chi.Router) {
	r.Route("/api/payments", func(r chi.Router) {
		r.Use(auth.CurrentUser(h.key), auth.RequireAuth)
		r.Post("/", h.create)
	})
}

type createRequest struct {
	OrderID string `json:"orderId"`
	Token   string `json:"token"`
}

type createResponse struct {
	ID string `json:"id"`
}

const maxBody = 4 << 10

func (h *API) create(w http.ResponseWriter, r *http.Request) {
	user, _ := auth.UserFrom(r.Context())
	var req createRequest
	if err := httpx.Decode(r, &req, maxBody); err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	req.OrderID, req.Token = strings.TrimSpace(req.OrderID), strings.TrimSpace(req.Token)
	var fields []apperr.FieldError
	if req.OrderID == "" {
		fields = append(fields, apperr.FieldError{Field: "orderId", Message: "OrderId must be provided"})
	}
	if req.Token == "" {
		fields = append(fields, apperr.FieldError{Field: "token", Message: "Token must be provided"})
	}
	if err := apperr.Fields(fields...); err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	p, err := h.payer.Pay(r.Context(), user.ID, req.OrderID, req.Token)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, createResponse{ID: p.ID})
}
