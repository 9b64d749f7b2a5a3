// Package auth signs and verifies the session JWT (HS256 only) and provides
// the chi middleware that puts the current user into the request context.
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/httpx"
)

// CookieName is the cookie that carries the JWT, as in the original app.
const CookieName = "session"

// User is the signed-in user a request acts for.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// Claims is the JWT payload: {id, email, iat, exp}.
type Claims struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	jwt.RegisteredClaims
}

// Sign returns an HS256 token for u that expires after ttl.
func Sign(key []byte, u User, ttl time.Duration, now time.Time) (string, error) {
	if len(key) == 0 {
		return "", errors.New("auth: empty signing key")
	}
	c := Claims{ID: u.ID, Email: u.Email, RegisteredClaims: jwt.RegisteredClaims{
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
}

// Verify parses token and returns its claims. Only HS256 signed with key is
// accepted; "none", RS*, HS384/512, a bad signature, an expired token or one
// without id, email or exp are rejected.
func Verify(key []byte, token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	if err != nil {
		return nil, err
	}
	if c.ID == "" || c.Email == "" {
		return nil, errors.New("auth: token without id or email")
	}
	return &c, nil
}

type ctxKey struct{}

// WithUser returns ctx carrying c.
func WithUser(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// ClaimsFrom returns the verified claims of the request, or nil.
func ClaimsFrom(ctx context.Context) *Claims {
	c, _ := ctx.Value(ctxKey{}).(*Claims)
	return c
}

// UserFrom returns the current user and whether there is one.
func UserFrom(ctx context.Context) (User, bool) {
	c := ClaimsFrom(ctx)
	if c == nil {
		return User{}, false
	}
	return User{ID: c.ID, Email: c.Email}, true
}

// CurrentUser sets the current user from "Authorization: Bearer <jwt>" or,
// failing that, from the session cookie. An absent or invalid token leaves
// the request anonymous; RequireAuth decides whether that is allowed.
func CurrentUser(key []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tok := tokenOf(r); tok != "" {
				if c, err := Verify(key, tok); err == nil {
					r = r.WithContext(WithUser(r.Context(), c))
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func tokenOf(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if ck, err := r.Cookie(CookieName); err == nil {
		return ck.Value
	}
	return ""
}

// RequireAuth answers 401 "Not authorized" when there is no current user.
func RequireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ClaimsFrom(r.Context()) == nil {
			httpx.WriteError(w, r, slog.Default(), apperr.ErrNotAuthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
