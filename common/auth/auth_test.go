package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ticketing-go/ticketing/common/auth"
)

var key = []byte("test-signing-key-0123456789")

func sign(t *testing.T, m jwt.SigningMethod, k any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"id": "u1", "email": "a@b.c", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func without(c jwt.MapClaims, k string) jwt.MapClaims { delete(c, k); return c }
func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	c[k] = v
	return c
}

func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Now()
	tok, err := auth.Sign(key, auth.User{ID: "u1", Email: "a@b.c"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := auth.Verify(key, tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.ID != "u1" || c.Email != "a@b.c" || c.ExpiresAt.Unix() != now.Add(time.Hour).Unix() || c.IssuedAt.Unix() != now.Unix() {
		t.Fatalf("claims = %+v", c)
	}
	// the payload has exactly the original's claims
	parts := strings.Split(tok, ".")
	payload, _ := jwt.NewParser().DecodeSegment(parts[1])
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	for _, k := range []string{"id", "email", "iat", "exp"} {
		if _, ok := m[k]; !ok {
			t.Errorf("payload lacks %q: %s", k, payload)
		}
	}
	if _, err := auth.Sign(nil, auth.User{ID: "u"}, time.Hour, now); err == nil {
		t.Fatal("Sign with an empty key must fail")
	}
}

func TestVerifyRejects(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, jwt.SigningMethodHS256, key, validClaims())
	parts := strings.Split(valid, ".")
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)

	cases := map[string]string{
		"alg none":         none,
		"RS256":            sign(t, jwt.SigningMethodRS256, rsaKey, validClaims()),
		"HS384":            sign(t, jwt.SigningMethodHS384, key, validClaims()),
		"HS512":            sign(t, jwt.SigningMethodHS512, key, validClaims()),
		"other key":        sign(t, jwt.SigningMethodHS256, []byte("another-key-entirely-0123"), validClaims()),
		"bad signature":    parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"tampered payload": parts[0] + "." + strings.Split(sign(t, jwt.SigningMethodHS256, key, with(validClaims(), "id", "admin")), ".")[1] + "." + parts[2],
		"expired":          sign(t, jwt.SigningMethodHS256, key, with(validClaims(), "exp", time.Now().Add(-time.Minute).Unix())),
		"issued in future": sign(t, jwt.SigningMethodHS256, key, with(validClaims(), "iat", time.Now().Add(time.Hour).Unix())),
		"missing exp":      sign(t, jwt.SigningMethodHS256, key, without(validClaims(), "exp")),
		"missing id":       sign(t, jwt.SigningMethodHS256, key, without(validClaims(), "id")),
		"missing email":    sign(t, jwt.SigningMethodHS256, key, without(validClaims(), "email")),
		"id of wrong type": sign(t, jwt.SigningMethodHS256, key, with(validClaims(), "id", 42)),
		"garbage":          "not-a-jwt",
		"empty":            "",
		"two parts":        parts[0] + "." + parts[1],
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if c, err := auth.Verify(key, tok); err == nil {
				t.Fatalf("Verify accepted %s: %+v", name, c)
			}
		})
	}
	if _, err := auth.Verify(key, valid); err != nil {
		t.Fatalf("the valid token itself is rejected: %v", err)
	}
}

func TestCurrentUserAndRequireAuth(t *testing.T) {
	good, _ := auth.Sign(key, auth.User{ID: "u1", Email: "a@b.c"}, time.Hour, time.Now())
	bad := sign(t, jwt.SigningMethodHS512, key, validClaims())
	h := auth.CurrentUser(key)(auth.RequireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := auth.UserFrom(r.Context())
		if !ok {
			t.Error("RequireAuth let an anonymous request through")
		}
		_, _ = w.Write([]byte(u.ID))
	})))
	cases := []struct {
		name   string
		set    func(r *http.Request)
		status int
	}{
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+good) }, 200},
		{"bearer lower case scheme", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+good) }, 200},
		{"cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: auth.CookieName, Value: good}) }, 200},
		{"none", func(*http.Request) {}, 401},
		{"bad bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+bad) }, 401},
		{"bad cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: auth.CookieName, Value: bad}) }, 401},
		{"basic scheme", func(r *http.Request) { r.Header.Set("Authorization", "Basic "+good) }, 401},
		{"other cookie name", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "jwt", Value: good}) }, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			c.set(r)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != c.status {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, c.status, rec.Body.String())
			}
			if c.status == 200 && rec.Body.String() != "u1" {
				t.Fatalf("user = %q", rec.Body.String())
			}
			if c.status == 401 && strings.TrimSpace(rec.Body.String()) != `{"errors":[{"message":"Not authorized"}]}` {
				t.Fatalf("401 body = %s", rec.Body.String())
			}
		})
	}
}

func TestCurrentUserLeavesAnonymousRequestsAlone(t *testing.T) {
	called := false
	h := auth.CurrentUser(key)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		if _, ok := auth.UserFrom(r.Context()); ok {
			t.Error("anonymous request has a user")
		}
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer garbage")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !called {
		t.Fatal("CurrentUser must not answer itself")
	}
}
