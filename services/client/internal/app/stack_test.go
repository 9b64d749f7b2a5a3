package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/services/client/internal/app"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const jwtKey = "client-test-jwt-key"

// The services the client talks to, with the prefix the ingress (and the
// local stack's proxy) routes to each, and a short suffix for its database.
var backends = []struct{ name, prefix, db string }{
	{"auth", "/api/users", "a"},
	{"tickets", "/api/tickets", "t"},
	{"orders", "/api/orders", "o"},
	{"expiration", "", "e"},
	{"payments", "/api/payments", "p"},
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildServices builds the five API services' binaries once per test
// process, with one go build (the toolchain shares the work).
func buildServices(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		if binDir, err = os.MkdirTemp("", "client-test-bin-"); err != nil {
			buildErr = err
			return
		}
		args := []string{"build", "-o", binDir + string(filepath.Separator)}
		for _, b := range backends {
			args = append(args, "./services/"+b.name)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binDir
}

// stack is the whole system for one test: the five API services as
// processes (their real binaries) on this test's MongoDB databases and NATS
// subjects, payments on stripe-mock, the client in-process, and a proxy
// routing as the ingress does (/api/users -> auth, ..., / -> client).
type stack struct {
	URL string // what the browser opens
}

// startStack starts the system; orders holds a ticket for window.
func startStack(tb testing.TB, window time.Duration) *stack {
	tb.Helper()
	bin := buildServices(tb)
	m := testenv.Mongo(tb)
	n := testenv.EventBus(tb)
	stripe := declineProxy(tb, testenv.StripeMock(tb))

	urls := map[string]string{}
	for _, b := range backends {
		port := freePort(tb)
		env := []string{
			"PORT=" + strconv.Itoa(port),
			"MONGO_URI=" + m.URI,
			"MONGO_DB=" + m.Database + "_" + b.db,
			"JWT_KEY=" + jwtKey,
			"NATS_URL=" + n.URL,
			"NATS_CLUSTER_ID=" + n.ClusterID,
			"EVENT_BUS=" + n.Bus,
			"NATS_CLIENT_ID=" + b.name + "-client-test-" + strconv.Itoa(port),
			"NATS_SUBJECT_PREFIX=" + n.SubjectPrefix,
			"LOG_LEVEL=warn",
			"LOG_FORMAT=text",
		}
		switch b.name {
		case "auth":
			// Plain http in the test, as in the local stack; the cheapest
			// bcrypt keeps sign-ups fast on a busy machine.
			env = append(env, "COOKIE_SECURE=false", "BCRYPT_COST=4", "TRUSTED_PROXIES=1")
		case "orders":
			env = append(env, "EXPIRATION_WINDOW="+window.String())
		case "payments":
			env = append(env, "STRIPE_KEY=sk_test_clienttest", "STRIPE_API_BASE="+stripe)
		}
		urls[b.name] = startProcess(tb, b.name, filepath.Join(bin, b.name), env, port)
	}

	clientLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	clientURL := "http://" + clientLn.Addr().String()
	mux := http.NewServeMux()
	for _, b := range backends {
		if b.prefix != "" {
			rp := reverseProxy(tb, urls[b.name])
			mux.Handle(b.prefix, rp)
			mux.Handle(b.prefix+"/", rp)
		}
	}
	mux.Handle("/", reverseProxy(tb, clientURL))
	proxy := httptest.NewServer(mux)
	tb.Cleanup(proxy.Close)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- app.Run(ctx, app.Config{APIURL: proxy.URL, ShutdownGrace: 2 * time.Second}, clientLn, log)
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("client: %v", err)
		}
	})
	for name, u := range map[string]string{"client": clientURL} {
		waitReady(tb, name, u)
	}
	return &stack{URL: proxy.URL}
}

// reverseProxy forwards to base as the ingress does: the Host the browser
// used, and X-Forwarded-For.
func reverseProxy(tb testing.TB, base string) http.Handler {
	target, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
		pr.Out.Host = pr.In.Host
	}}
}

// startProcess runs one service binary and returns its URL once /readyz
// answers 200; it is stopped with SIGTERM (and must exit cleanly) in Cleanup.
func startProcess(tb testing.TB, name, bin string, env []string, port int) string {
	tb.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = prefixed(name), prefixed(name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test process
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				tb.Errorf("%s exited: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			tb.Errorf("%s did not stop on SIGTERM", name)
		}
	})
	u := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.Eventually(tb, 60*time.Second, name+" ready", func() bool {
		select {
		case err := <-exited:
			exited <- err
			tb.Fatalf("%s exited at start: %v", name, err)
		default:
		}
		return ready(u)
	})
	return u
}

func waitReady(tb testing.TB, name, u string) {
	tb.Helper()
	testenv.Eventually(tb, 30*time.Second, name+" ready", func() bool { return ready(u) })
}

func ready(u string) bool {
	res, err := http.Get(u + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// declineProxy stands in front of stripe-mock and answers the one thing
// stripe-mock cannot: a decline, for Stripe's test payment method
// pm_card_chargeDeclined, with the status and body real Stripe sends (as
// payments' own tests do). Everything else is stripe-mock's answer.
func declineProxy(tb testing.TB, stripeMock string) string {
	tb.Helper()
	target, err := url.Parse(stripeMock)
	if err != nil {
		tb.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/payment_intents" {
			body, _ := io.ReadAll(r.Body)
			form, _ := url.ParseQuery(string(body))
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			r.ContentLength = int64(len(body))
			if form.Get("payment_method") == "pm_card_chargeDeclined" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusPaymentRequired)
				_, _ = io.WriteString(w, `{"error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":"Your card was declined."}}`)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
}

// prefixed writes a child's output to stderr, each line prefixed.
func prefixed(name string) io.Writer { return &prefixWriter{prefix: "[" + name + "] "} }

type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		fmt.Fprint(os.Stderr, p.prefix+string(p.buf[:i+1]))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
