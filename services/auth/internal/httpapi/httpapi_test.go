package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/api/apispec"
	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/services/auth/internal/domain"
	"github.com/ticketing-go/ticketing/services/auth/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/auth/internal/ratelimit"
	"github.com/ticketing-go/ticketing/services/auth/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var testKey = []byte("test-jwt-key")

type apiOptions struct {
	signinRate     int // per minute; 0: unlimited
	trustedProxies int
	cookieSecure   bool
}

// MustOpenAPI serves the auth API over a fresh database of the test MongoDB
// through the same base router as the service binary.
func MustOpenAPI(tb testing.TB, o apiOptions) *httptest.Server {
	tb.Helper()
	db := testenv.MongoDatabase(tb)
	users, err := store.NewUsers(tb.Context(), db)
	if err != nil {
		tb.Fatal(err)
	}
	// The lowest bcrypt cost keeps the tests fast; the code path is the same.
	svc, err := domain.NewService(users, domain.Bcrypt{Cost: 4})
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	api := httpapi.New(svc, ratelimit.New(o.signinRate, time.Minute), httpapi.Config{
		JWTKey: testKey, TokenTTL: time.Hour, CookieSecure: o.cookieSecure, TrustedProxies: o.trustedProxies,
	}, log)
	r := httpx.NewRouter(httpx.RouterOptions{Service: "auth", Log: log})
	api.Mount(r)
	// Every response a test provokes is checked against api/openapi.yaml.
	srv := httptest.NewServer(apispec.Middleware(tb, r))
	tb.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) session() *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == auth.CookieName {
			return c
		}
	}
	return nil
}

func do(tb testing.TB, srv *httptest.Server, method, path, contentType, body string, hdr map[string]string) response {
	tb.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		tb.Fatalf("%s %s: body is not a JSON object: %q", method, path, raw)
	}
	return out
}

func post(tb testing.TB, srv *httptest.Server, path string, body any, hdr map[string]string) response {
	tb.Helper()
	b, _ := json.Marshal(body)
	return do(tb, srv, http.MethodPost, path, "application/json", string(b), hdr)
}

func creds(email, password string) map[string]string {
	return map[string]string{"email": email, "password": password}
}

// errorsOf returns the {"errors":[...]} of a body as "field:message" strings.
func errorsOf(body map[string]any) []string {
	list, _ := body["errors"].([]any)
	var out []string
	for _, e := range list {
		m, _ := e.(map[string]any)
		f, _ := m["field"].(string)
		msg, _ := m["message"].(string)
		out = append(out, f+":"+msg)
	}
	return out
}

func TestRoutes(t *testing.T) {
	srv := MustOpenAPI(t, apiOptions{})
	if r := post(t, srv, "/api/users/signup", creds("taken@test.com", "password"), nil); r.status != 201 {
		t.Fatalf("seed user: %d %s", r.status, r.raw)
	}
	huge := `{"email":"a@b.co","password":"` + strings.Repeat("x", 2<<20) + `"}`

	for _, tc := range []struct {
		name          string
		method, path  string
		ct, body      string
		wantStatus    int
		wantErrors    []string // "field:message"; nil: a success body
		wantUser      string   // expected email in a {id,email} success body
		wantSetCookie bool
	}{
		{"signup201", "POST", "/api/users/signup", "application/json", `{"email":"new@test.com","password":"password"}`, 201, nil, "new@test.com", true},
		{"signup201 trims", "POST", "/api/users/signup", "application/json", `{"email":" trim@test.com ","password":"  pass  "}`, 201, nil, "trim@test.com", true},
		{"signup400 invalid email", "POST", "/api/users/signup", "application/json", `{"email":"nope","password":"password"}`, 400, []string{"email:Email must be valid"}, "", false},
		{"signup400 missing email", "POST", "/api/users/signup", "application/json", `{"password":"password"}`, 400, []string{"email:Email must be valid"}, "", false},
		{"signup400 short password", "POST", "/api/users/signup", "application/json", `{"email":"x@test.com","password":"  abc  "}`, 400, []string{"password:Password must be between 4 and 20 characters"}, "", false},
		{"signup400 long password", "POST", "/api/users/signup", "application/json", `{"email":"x@test.com","password":"123456789012345678901"}`, 400, []string{"password:Password must be between 4 and 20 characters"}, "", false},
		{"signup400 both", "POST", "/api/users/signup", "application/json", `{}`, 400, []string{"email:Email must be valid", "password:Password must be between 4 and 20 characters"}, "", false},
		{"signup400 email in use", "POST", "/api/users/signup", "application/json", `{"email":"taken@test.com","password":"password"}`, 400, []string{":Email in use"}, "", false},
		{"signup400 email in use other case", "POST", "/api/users/signup", "application/json", `{"email":"TAKEN@Test.com","password":"password"}`, 400, []string{":Email in use"}, "", false},
		{"signup400 malformed json", "POST", "/api/users/signup", "application/json", `{"email":`, 400, []string{":Request body is not valid JSON"}, "", false},
		{"signup400 wrong type", "POST", "/api/users/signup", "application/json", `{"email":5,"password":"password"}`, 400, []string{"email:email has the wrong type (want string)"}, "", false},
		{"signup400 empty body", "POST", "/api/users/signup", "application/json", ``, 400, []string{":Request body must not be empty"}, "", false},
		{"signup415", "POST", "/api/users/signup", "text/plain", `email=a`, 415, []string{":Content-Type must be application/json"}, "", false},
		{"signup413", "POST", "/api/users/signup", "application/json", huge, 413, []string{":Request body must not exceed 1048576 bytes"}, "", false},
		{"signin200", "POST", "/api/users/signin", "application/json", `{"email":"taken@test.com","password":"password"}`, 200, nil, "taken@test.com", true},
		{"signin200 other case", "POST", "/api/users/signin", "application/json", `{"email":"Taken@TEST.com","password":" password "}`, 200, nil, "taken@test.com", true},
		{"signin400 invalid email", "POST", "/api/users/signin", "application/json", `{"email":"taken","password":"password"}`, 400, []string{"email:Email must be valid"}, "", false},
		{"signin400 no password", "POST", "/api/users/signin", "application/json", `{"email":"taken@test.com","password":"   "}`, 400, []string{"password:You must supply a password"}, "", false},
		{"signin400 unknown email", "POST", "/api/users/signin", "application/json", `{"email":"who@test.com","password":"password"}`, 400, []string{":Invalid credentials"}, "", false},
		{"signin400 wrong password", "POST", "/api/users/signin", "application/json", `{"email":"taken@test.com","password":"passw0rd"}`, 400, []string{":Invalid credentials"}, "", false},
		{"signin415", "POST", "/api/users/signin", "", `{"email":"taken@test.com","password":"password"}`, 415, []string{":Content-Type must be application/json"}, "", false},
		{"signout200", "POST", "/api/users/signout", "", ``, 200, nil, "", true},
		{"currentuser200 anonymous", "GET", "/api/users/currentuser", "", ``, 200, nil, "", false},
		{"currentuser405", "POST", "/api/users/currentuser", "", ``, 405, []string{":Method not allowed"}, "", false},
		{"unknown404", "GET", "/api/users/nope", "", ``, 404, []string{":Not Found"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, tc.method, tc.path, tc.ct, tc.body, nil)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.wantStatus, r.raw)
			}
			if got := errorsOf(r.body); fmt.Sprint(got) != fmt.Sprint(tc.wantErrors) {
				t.Fatalf("errors %q, want %q", got, tc.wantErrors)
			}
			if (r.session() != nil) != tc.wantSetCookie {
				t.Fatalf("Set-Cookie session: %v, want %v", r.header.Values("Set-Cookie"), tc.wantSetCookie)
			}
			if tc.wantUser != "" {
				id, _ := r.body["id"].(string)
				if r.body["email"] != tc.wantUser || len(id) != 24 || len(r.body) != 2 {
					t.Fatalf("body %s, want {id, email:%q}", r.raw, tc.wantUser)
				}
			}
		})
	}

	// Bodies of the successes that carry no user.
	if r := do(t, srv, "POST", "/api/users/signout", "", "", nil); r.raw != "{}\n" {
		t.Errorf("signout body %q, want {}", r.raw)
	}
	if r := do(t, srv, "GET", "/api/users/currentuser", "", "", nil); r.raw != `{"currentUser":null}`+"\n" {
		t.Errorf("anonymous currentuser body %q", r.raw)
	}
	if r := do(t, srv, "GET", "/api/users/currentuser", "", "", map[string]string{"Cookie": "session=garbage"}); r.raw != `{"currentUser":null}`+"\n" {
		t.Errorf("currentuser with an invalid token: %q, want currentUser null", r.raw)
	}
}

func TestSessionCookieAndCurrentUser(t *testing.T) {
	for _, secure := range []bool{true, false} {
		t.Run("secure="+strconv.FormatBool(secure), func(t *testing.T) {
			srv := MustOpenAPI(t, apiOptions{cookieSecure: secure})
			r := post(t, srv, "/api/users/signup", creds("Me@Test.com", "password"), nil)
			if r.status != 201 {
				t.Fatalf("signup: %d %s", r.status, r.raw)
			}
			ck := r.session()
			if ck == nil || ck.Value == "" {
				t.Fatalf("no session cookie: %v", r.header.Values("Set-Cookie"))
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure != secure || ck.MaxAge != 3600 {
				t.Fatalf("cookie %q: want HttpOnly, SameSite=Lax, Path=/, Secure=%v, Max-Age=3600", r.header.Get("Set-Cookie"), secure)
			}

			cu := do(t, srv, "GET", "/api/users/currentuser", "", "", map[string]string{"Cookie": "session=" + ck.Value})
			u, ok := cu.body["currentUser"].(map[string]any)
			if !ok {
				t.Fatalf("currentuser with cookie: %s", cu.raw)
			}
			iat, _ := u["iat"].(float64)
			exp, _ := u["exp"].(float64)
			if u["id"] != r.body["id"] || u["email"] != "Me@Test.com" || exp-iat != 3600 || len(u) != 4 {
				t.Fatalf("currentUser %v; want id %v, email Me@Test.com, exp-iat 3600", u, r.body["id"])
			}

			// The bearer header works as well (as in tickets and orders).
			cu = do(t, srv, "GET", "/api/users/currentuser", "", "", map[string]string{"Authorization": "Bearer " + ck.Value})
			if u, ok := cu.body["currentUser"].(map[string]any); !ok || u["id"] != r.body["id"] {
				t.Fatalf("currentuser with bearer: %s", cu.raw)
			}

			out := do(t, srv, "POST", "/api/users/signout", "", "", map[string]string{"Cookie": "session=" + ck.Value})
			cleared := out.session()
			if cleared == nil || cleared.Value != "" || cleared.MaxAge >= 0 || cleared.Path != "/" {
				t.Fatalf("signout Set-Cookie %q: want session cleared (empty, Max-Age=0, Path=/)", out.header.Get("Set-Cookie"))
			}
		})
	}
}

func TestConcurrentDuplicateSignup(t *testing.T) {
	srv := MustOpenAPI(t, apiOptions{})
	const n = 20
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
		other []string
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Different spellings of one address: the lower-cased key decides.
			email := "race@test.com"
			if i%2 == 1 {
				email = "RACE@Test.com"
			}
			r := post(t, srv, "/api/users/signup", creds(email, "password"), nil)
			mu.Lock()
			defer mu.Unlock()
			codes[r.status]++
			if r.status == 400 && fmt.Sprint(errorsOf(r.body)) != "[:Email in use]" {
				other = append(other, r.raw)
			}
		}()
	}
	wg.Wait()
	if codes[201] != 1 || codes[400] != n-1 || len(other) > 0 {
		t.Fatalf("status counts %v (unexpected 400 bodies %v); want exactly one 201 and %d x 400 Email in use", codes, other, n-1)
	}
	if r := post(t, srv, "/api/users/signin", creds("race@test.com", "password"), nil); r.status != 200 {
		t.Fatalf("signin after the race: %d %s", r.status, r.raw)
	}
}

func TestUnknownEmailAndWrongPasswordAnswerAlike(t *testing.T) {
	srv := MustOpenAPI(t, apiOptions{})
	if r := post(t, srv, "/api/users/signup", creds("known@test.com", "password"), nil); r.status != 201 {
		t.Fatalf("signup: %d %s", r.status, r.raw)
	}
	unknown := post(t, srv, "/api/users/signin", creds("unknown@test.com", "password"), nil)
	wrong := post(t, srv, "/api/users/signin", creds("known@test.com", "wrongpass"), nil)
	if unknown.status != 400 || unknown.raw != wrong.raw || unknown.status != wrong.status {
		t.Fatalf("unknown email: %d %s; wrong password: %d %s; want the same 400", unknown.status, unknown.raw, wrong.status, wrong.raw)
	}
	if unknown.session() != nil || wrong.session() != nil {
		t.Fatal("a failed sign-in set a session cookie")
	}
}

// The token auth issues must be accepted by the middleware the other
// services (tickets, orders, payments) put in front of their routes.
func TestTokenAcceptedByCommonMiddleware(t *testing.T) {
	srv := MustOpenAPI(t, apiOptions{})
	r := post(t, srv, "/api/users/signup", creds("buyer@test.com", "password"), nil)
	if r.status != 201 {
		t.Fatalf("signup: %d %s", r.status, r.raw)
	}
	token := r.session().Value

	other := func(key []byte) *httptest.Server {
		rt := httpx.NewRouter(httpx.RouterOptions{Service: "tickets"})
		rt.With(auth.CurrentUser(key), auth.RequireAuth).Get("/api/tickets/mine", func(w http.ResponseWriter, r *http.Request) {
			u, _ := auth.UserFrom(r.Context())
			httpx.WriteJSON(w, 200, u)
		})
		s := httptest.NewServer(rt)
		t.Cleanup(s.Close)
		return s
	}
	same, foreign := other(testKey), other([]byte("another-key"))

	for _, h := range []map[string]string{{"Cookie": "session=" + token}, {"Authorization": "Bearer " + token}} {
		got := do(t, same, "GET", "/api/tickets/mine", "", "", h)
		if got.status != 200 || got.body["id"] != r.body["id"] || got.body["email"] != "buyer@test.com" {
			t.Fatalf("with %v: %d %s; want 200 and the user", h, got.status, got.raw)
		}
		if got := do(t, foreign, "GET", "/api/tickets/mine", "", "", h); got.status != 401 {
			t.Fatalf("service with another key accepted the token: %d %s", got.status, got.raw)
		}
	}
	if got := do(t, same, "GET", "/api/tickets/mine", "", "", nil); got.status != 401 || fmt.Sprint(errorsOf(got.body)) != "[:Not authorized]" {
		t.Fatalf("without a token: %d %s; want 401 Not authorized", got.status, got.raw)
	}
}

func TestSigninRateLimit(t *testing.T) {
	srv := MustOpenAPI(t, apiOptions{signinRate: 3, trustedProxies: 1})
	if r := post(t, srv, "/api/users/signup", creds("victim@test.com", "password"), nil); r.status != 201 {
		t.Fatalf("signup: %d %s", r.status, r.raw)
	}
	client1 := map[string]string{"X-Forwarded-For": "203.0.113.1"}
	for i := range 3 {
		if r := post(t, srv, "/api/users/signin", creds("victim@test.com", "guess"+strconv.Itoa(i)), client1); r.status != 400 {
			t.Fatalf("attempt %d: %d %s; want 400 within the limit", i+1, r.status, r.raw)
		}
	}
	// Over the limit even the right password is refused, in the common format.
	r := post(t, srv, "/api/users/signin", creds("VICTIM@test.com", "password"), client1)
	if r.status != http.StatusTooManyRequests || len(errorsOf(r.body)) != 1 || r.session() != nil {
		t.Fatalf("4th attempt: %d %s; want 429 with one error and no cookie", r.status, r.raw)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 20 {
		t.Fatalf("Retry-After %q; want whole seconds in [1, 20] at 3/min", r.header.Get("Retry-After"))
	}
	// A client cannot escape the limit by sending its own X-Forwarded-For:
	// only the entry appended by the trusted proxy counts.
	spoof := map[string]string{"X-Forwarded-For": "198.51.100.7, 203.0.113.1"}
	if r := post(t, srv, "/api/users/signin", creds("victim@test.com", "password"), spoof); r.status != 429 {
		t.Fatalf("spoofed X-Forwarded-For: %d %s; want 429", r.status, r.raw)
	}
	// Another client, or another email from the same client, is not affected.
	if r := post(t, srv, "/api/users/signin", creds("victim@test.com", "password"), map[string]string{"X-Forwarded-For": "203.0.113.2"}); r.status != 200 {
		t.Fatalf("other client: %d %s; want 200", r.status, r.raw)
	}
	if r := post(t, srv, "/api/users/signin", creds("other@test.com", "password"), client1); r.status != 400 || fmt.Sprint(errorsOf(r.body)) != "[:Invalid credentials]" {
		t.Fatalf("other email: %d %s; want 400 Invalid credentials", r.status, r.raw)
	}
}
