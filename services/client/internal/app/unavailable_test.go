package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/services/client/internal/app"
	"github.com/ticketing-go/ticketing/testenv"
)

// TestAPIUnreachable: with no API answering (a port nothing listens on),
// every page still answers with a readable message and a gateway status,
// never a blank page or a 500; a cross-site form post is refused.
func TestAPIUnreachable(t *testing.T) {
	dead := freePort(t) // closed again: connections are refused
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{APIURL: "http://127.0.0.1:" + itoa(dead), APITimeout: 5 * time.Second},
			ln, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	base := "http://" + ln.Addr().String()
	testenv.Eventually(t, 10*time.Second, "client ready", func() bool { return ready(base) })

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cookie := &http.Cookie{Name: "session", Value: "x"} // a session the client cannot check
	for _, c := range []struct {
		method, path string
		form         url.Values
		status       int
		want         string
	}{
		{"GET", "/", nil, 502, "The tickets service is not reachable right now"},
		{"GET", "/tickets/0123456789abcdef01234567", nil, 502, "The tickets service is not reachable right now"},
		{"GET", "/orders", nil, 502, "The orders service is not reachable right now"},
		{"GET", "/orders/0123456789abcdef01234567", nil, 502, "The orders service is not reachable right now"},
		{"GET", "/mytickets", nil, 502, "The auth service is not reachable right now"},
		{"POST", "/auth/signin", url.Values{"email": {"a@b.io"}, "password": {"pass"}}, 502, "The auth service is not reachable right now"},
		{"POST", "/tickets/new", url.Values{"title": {"t"}, "price": {"1"}}, 502, "The tickets service is not reachable right now"},
		{"POST", "/orders/0123456789abcdef01234567/pay", url.Values{"token": {"pm_card_visa"}}, 502, "The orders service is not reachable right now"},
		{"GET", "/no/such/page", nil, 404, "There is no such page."},
	} {
		var body io.Reader
		if c.form != nil {
			body = strings.NewReader(c.form.Encode())
		}
		req, _ := http.NewRequest(c.method, base+c.path, body)
		if c.form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.AddCookie(cookie)
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.Contains(string(b), c.want) || !strings.Contains(res.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s %s: %d %s\n%s", c.method, c.path, res.StatusCode, res.Header.Get("Content-Type"), b)
		}
	}

	// A form posted from another site is refused before anything is sent.
	req, _ := http.NewRequest("POST", base+"/orders/0123456789abcdef01234567/pay", strings.NewReader("token=pm_card_visa"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "sent from another site") {
		t.Errorf("cross-site post: %d %s", res.StatusCode, b)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
