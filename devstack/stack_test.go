package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// stack is a Run in progress; done is closed when Run returned err.
type stack struct {
	base   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// stop cancels the stack and returns Run's result.
func (s *stack) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		return s.err
	case <-time.After(30 * time.Second):
		t.Fatal("stack did not stop within 30s")
		return nil
	}
}

// MustStartStack runs the stack on free ports with its data in dataDir; it
// is stopped at the end of the test.
func MustStartStack(t *testing.T, dataDir string, tweak func(*Options)) *stack {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Root:     root,
		DataDir:  dataDir,
		Listener: ln,
		JWTKey:   "smoke-test-key",
		// stripe-mock is built once per machine, not once per test.
		CacheDir: filepath.Join(os.TempDir(), "ticketing-devstack-cache"),
		// Children must not inherit these from a developer's shell.
		BaseEnv: filterEnv(os.Environ(), "MONGO_URI", "NATS_URL", "PORT", "JWT_KEY", "STRIPE_KEY", "STRIPE_API_BASE"),
		Log:     slog.New(slog.NewTextHandler(t.Output(), nil)),
		Out:     t.Output(),
	}
	if tweak != nil {
		tweak(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{base: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan struct{})}
	go func() {
		s.err = Run(ctx, o)
		close(s.done)
	}()
	t.Cleanup(func() { _ = s.stop(t) })
	return s
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

type reply struct {
	status int
	body   map[string]any
	cookie string
}

func call(t *testing.T, method, url, body, cookie string) (reply, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.Header.Set("Cookie", "session="+cookie)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := reply{status: res.StatusCode}
	_ = json.Unmarshal(raw, &r.body)
	for _, c := range res.Cookies() {
		if c.Name == "session" {
			r.cookie = c.Value
		}
	}
	return r, nil
}

// get returns the status and body of a GET (a failed request is status 0).
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(raw)
}

// until polls f until it returns true, failing the test when the stack
// stops or the deadline passes.
func until(t *testing.T, s *stack, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		select {
		case <-s.done:
			t.Fatalf("%s: the stack stopped: %v", what, s.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestStackServesSignupThroughTheProxy(t *testing.T) {
	if _, err := os.Stat("../services/auth/main.go"); err != nil {
		t.Fatalf("the auth service is part of every stack: %v", err)
	}
	dataDir := t.TempDir()
	st := MustStartStack(t, dataDir, nil)
	base := st.base

	// The services are built first: allow for a cold build cache.
	var signup reply
	until(t, st, 4*time.Minute, "signup through the proxy", func() bool {
		r, err := call(t, "POST", base+"/api/users/signup", `{"email":"dev@test.com","password":"password"}`, "")
		signup = r
		return err == nil && r.status != http.StatusServiceUnavailable && r.status != http.StatusBadGateway
	})
	if signup.status != http.StatusCreated || signup.body["email"] != "dev@test.com" || signup.cookie == "" {
		t.Fatalf("signup: %d %v (cookie %q); want 201 with the user and a session cookie", signup.status, signup.body, signup.cookie)
	}
	cu, err := call(t, "GET", base+"/api/users/currentuser", "", signup.cookie)
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := cu.body["currentUser"].(map[string]any); u == nil || u["id"] != signup.body["id"] {
		t.Fatalf("currentuser through the proxy: %d %v", cu.status, cu.body)
	}
	// Every other path is the web client's, which calls the APIs through
	// this same proxy: its list page is HTML made from GET /api/tickets.
	until(t, st, time.Minute, "the web client's list page", func() bool {
		status, page := get(t, base+"/")
		return status == http.StatusOK && strings.Contains(page, "Tickets for sale")
	})
	if status, page := get(t, base+"/nope"); status != http.StatusNotFound || !strings.Contains(page, "There is no such page.") {
		t.Fatalf("unknown path: %d %s; want the web client's 404 page", status, page)
	}
	if r, _ := call(t, "GET", base+"/_routes", "", ""); r.status != http.StatusOK || r.body["routes"] == nil {
		t.Fatalf("/_routes: %d %v; want the list of routes", r.status, r.body)
	}

}

// A restart of the whole stack on the same data directory keeps the data:
// the user signed up before signs in after, and every service starts again
// on its existing databases and NATS store.
func TestStackRestartKeepsData(t *testing.T) {
	dataDir := t.TempDir()
	st := MustStartStack(t, dataDir, nil)
	var signup reply
	until(t, st, 4*time.Minute, "signup through the proxy", func() bool {
		r, err := call(t, "POST", st.base+"/api/users/signup", `{"email":"again@test.com","password":"password"}`, "")
		signup = r
		return err == nil && r.status != http.StatusServiceUnavailable && r.status != http.StatusBadGateway
	})
	if signup.status != http.StatusCreated {
		t.Fatalf("signup: %d %v", signup.status, signup.body)
	}
	if err := st.stop(t); err != nil {
		t.Fatalf("stack stopped with %v; want a clean stop", err)
	}

	st = MustStartStack(t, dataDir, nil)
	var signin reply
	until(t, st, 2*time.Minute, "signin after a restart", func() bool {
		r, err := call(t, "POST", st.base+"/api/users/signin", `{"email":"again@test.com","password":"password"}`, "")
		signin = r
		return err == nil && r.status != http.StatusServiceUnavailable && r.status != http.StatusBadGateway
	})
	if signin.status != http.StatusOK || signin.body["id"] != signup.body["id"] {
		t.Fatalf("signin after restart: %d %v; want 200 and the same user", signin.status, signin.body)
	}
	// Every service came back up (not only auth): the stack is still running
	// after all of them had the time to open their stores.
	until(t, st, time.Minute, "every service healthy after the restart", func() bool {
		r, err := call(t, "GET", st.base+"/_routes", "", "")
		return err == nil && r.status == http.StatusOK && allHealthy(t, r.body)
	})
}

// allHealthy reports whether every backend listed by the proxy's /_routes answers
// its /healthz.
func allHealthy(t *testing.T, index map[string]any) bool {
	routes, _ := index["routes"].(map[string]any)
	for _, v := range routes {
		base, _ := v.(string)
		if !strings.HasPrefix(base, "http://") {
			continue
		}
		r, err := call(t, "GET", base+"/healthz", "", "")
		if err != nil || r.status != http.StatusOK {
			return false
		}
	}
	return true
}

// A service that dies is not restarted silently: the stack stops with an
// error naming it. Here auth cannot reach its MongoDB and exits.
func TestStackStopsWhenAServiceDies(t *testing.T) {
	st := MustStartStack(t, t.TempDir(), func(o *Options) {
		o.Services = []Service{{Name: "auth", Prefix: "/api/users"}}
		o.MongoURI = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500&connectTimeoutMS=500"
	})
	select {
	case <-st.done:
		if st.err == nil || !strings.Contains(st.err.Error(), "auth exited") {
			t.Fatalf("stack stopped with %v; want an error naming auth", st.err)
		}
	case <-time.After(4 * time.Minute):
		t.Fatal("the stack kept running after auth died")
	}
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"mongodb://127.0.0.1:27017":                     "mongodb://127.0.0.1:27017/auth",
		"mongodb://u:p@h:1/other?replicaSet=rs0":        "mongodb://u:p@h:1/auth?replicaSet=rs0",
		"mongodb+srv://cluster.example.com/?retry=true": "mongodb+srv://cluster.example.com/auth?retry=true",
		"not a uri": "not a uri",
	} {
		if got := withDatabase(in, "auth"); got != want {
			t.Errorf("withDatabase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrefixWriter(t *testing.T) {
	var sb strings.Builder
	var w = &prefixWriter{mu: new(sync.Mutex), out: &sb, prefix: []byte("auth | ")}
	_, _ = w.Write([]byte("one\ntw"))
	_, _ = w.Write([]byte("o\nthree"))
	w.flush()
	if got, want := sb.String(), "auth | one\nauth | two\nauth | three\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// With EVENT_BUS=jetstream the stack runs nats-server with JetStream and
// the services on it: a ticket created in tickets reaches orders
// (ticket:created), and the order reserves it in tickets (order:created).
func TestStackOnJetStream(t *testing.T) {
	st := MustStartStack(t, t.TempDir(), func(o *Options) {
		o.Bus = "jetstream"
		o.BaseEnv = filterEnv(o.BaseEnv, "EVENT_BUS")
	})
	var signup reply
	until(t, st, 4*time.Minute, "signup through the proxy", func() bool {
		r, err := call(t, "POST", st.base+"/api/users/signup", `{"email":"js@test.com","password":"password"}`, "")
		signup = r
		return err == nil && r.status != http.StatusServiceUnavailable && r.status != http.StatusBadGateway
	})
	if signup.status != http.StatusCreated {
		t.Fatalf("signup: %d %v", signup.status, signup.body)
	}
	var ticket reply
	until(t, st, time.Minute, "a ticket created", func() bool {
		r, err := call(t, "POST", st.base+"/api/tickets", `{"title":"concert","price":20}`, signup.cookie)
		ticket = r
		return err == nil && r.status == http.StatusCreated
	})
	id, _ := ticket.body["id"].(string)
	// 404 until orders has the ticket from its event.
	until(t, st, time.Minute, "an order for the ticket (ticket:created reached orders)", func() bool {
		r, err := call(t, "POST", st.base+"/api/orders", `{"ticketId":"`+id+`"}`, signup.cookie)
		return err == nil && r.status == http.StatusCreated
	})
	until(t, st, time.Minute, "the ticket reserved (order:created reached tickets)", func() bool {
		r, err := call(t, "GET", st.base+"/api/tickets/"+id, "", "")
		orderID, _ := r.body["orderId"].(string)
		return err == nil && r.status == http.StatusOK && orderID != ""
	})
}
