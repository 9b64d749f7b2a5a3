// Package httpapi is the HTTP port of the auth service: /api/users/signup,
// signin, signout and currentuser on the common base router.
package httpapi

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/services/auth/internal/domain"
)

// Accounts is what the API needs of the domain.
type Accounts interface {
	Signup(ctx context.Context, in domain.SignupInput) (*domain.User, error)
	Signin(ctx context.Context, in domain.SigninInput) (*domain.User, error)
}

// Limiter limits sign-in attempts per key.
type Limiter interface {
	Allow(key string) (ok bool, retryAfter time.Duration)
}

// Config is what the HTTP port is configured with.
type Config struct {
	JWTKey       []byte
	TokenTTL     time.Duration
	CookieSecure bool // false only for local http (the dev stack)
	// TrustedProxies is how many reverse proxies in front of the service
	// append to X-Forwarded-For (1 behind the ingress or the dev stack); 0
	// means the client is the peer address. The client IP keys the sign-in
	// rate limit, so X-Forwarded-For entries a client could forge are ignored.
	TrustedProxies int
	Now            func() time.Time // nil: time.Now
}

// API serves the routes.
type API struct {
	accounts Accounts
	signins  Limiter
	cfg      Config
	log      *slog.Logger
}

// New returns the API.
func New(accounts Accounts, signins Limiter, cfg Config, log *slog.Logger) *API {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &API{accounts: accounts, signins: signins, cfg: cfg, log: log}
}

// Mount adds the routes to r (the router of httpx.NewRouter).
func (a *API) Mount(r chi.Router) {
	r.Route("/api/users", func(r chi.Router) {
		r.Post("/signup", a.signup)
		r.Post("/signin", a.signin)
		r.Post("/signout", a.signout)
		r.With(auth.CurrentUser(a.cfg.JWTKey)).Get("/currentuser", a.currentUser)
	})
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type userJSON struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

func (a *API) signup(w http.ResponseWriter, r *http.Request) {
	var in credentials
	if err := httpx.Decode(r, &in, 0); err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := a.accounts.Signup(r.Context(), domain.SignupInput{Email: in.Email, Password: in.Password})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.setSession(w, u); err != nil {
		a.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, userJSON{ID: u.ID, Email: u.Email})
}

func (a *API) signin(w http.ResponseWriter, r *http.Request) {
	var in credentials
	if err := httpx.Decode(r, &in, 0); err != nil {
		a.fail(w, r, err)
		return
	}
	si := domain.SigninInput{Email: in.Email, Password: in.Password}
	if err := si.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	// Limited per client and email: guessing one account's password from one
	// client is slowed down, other users and other clients are unaffected.
	_, key := domain.NormalizeEmail(si.Email)
	if ok, wait := a.signins.Allow(clientIP(r, a.cfg.TrustedProxies) + "|" + key); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		a.fail(w, r, apperr.New(apperr.TooManyRequests, "Too many sign-in attempts, try again later"))
		return
	}
	u, err := a.accounts.Signin(r.Context(), si)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.setSession(w, u); err != nil {
		a.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, userJSON{ID: u.ID, Email: u.Email})
}

func (a *API) signout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, a.cookie("", -1))
	httpx.WriteJSON(w, http.StatusOK, struct{}{})
}

type currentUserJSON struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

func (a *API) currentUser(w http.ResponseWriter, r *http.Request) {
	c := auth.ClaimsFrom(r.Context())
	if c == nil {
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"currentUser": nil})
		return
	}
	cu := currentUserJSON{ID: c.ID, Email: c.Email}
	if c.IssuedAt != nil {
		cu.Iat = c.IssuedAt.Unix()
	}
	if c.ExpiresAt != nil {
		cu.Exp = c.ExpiresAt.Unix()
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"currentUser": cu})
}

func (a *API) setSession(w http.ResponseWriter, u *domain.User) error {
	tok, err := auth.Sign(a.cfg.JWTKey, auth.User{ID: u.ID, Email: u.Email}, a.cfg.TokenTTL, a.cfg.Now())
	if err != nil {
		return err
	}
	http.SetCookie(w, a.cookie(tok, int(a.cfg.TokenTTL.Seconds())))
	return nil
}

// cookie is the session cookie; maxAge < 0 deletes it.
func (a *API) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     auth.CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   a.cfg.CookieSecure,
		SameSite: http.SameSiteLaxMode,
	}
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, a.log, err)
}

// clientIP is the address of the client: the peer, or, behind trusted
// proxies, the X-Forwarded-For entry the outermost trusted proxy appended.
func clientIP(r *http.Request, trusted int) string {
	if trusted > 0 {
		var hops []string
		for _, h := range r.Header.Values("X-Forwarded-For") {
			for _, p := range strings.Split(h, ",") {
				if p = strings.TrimSpace(p); p != "" {
					hops = append(hops, p)
				}
			}
		}
		if len(hops) >= trusted {
			return hops[len(hops)-trusted]
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
