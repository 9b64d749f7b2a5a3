package app_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/testenv"
)

var hex24 = regexp.MustCompile(`^[0-9a-f]{24}$`)

// wantErrors checks an error response: status and the (field, message) pairs.
func wantErrors(t *testing.T, r response, status int, want ...[2]string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Body)
	}
	body := decodeJSON[errorsJSON](t, r)
	if len(want) == 0 {
		if len(body.Errors) == 0 || body.Errors[0].Message == "" {
			t.Fatalf("no error message in %s", r.Body)
		}
		return
	}
	if len(body.Errors) != len(want) {
		t.Fatalf("errors = %s, want %v", r.Body, want)
	}
	for i, w := range want {
		if body.Errors[i].Field != w[0] || body.Errors[i].Message != w[1] {
			t.Fatalf("error %d = %+v, want field %q message %q (body %s)", i, body.Errors[i], w[0], w[1], r.Body)
		}
	}
}

var (
	errTitle      = [2]string{"title", "Title is required"}
	errPrice      = [2]string{"price", "Price must be greater than 0"}
	errNotAuth    = [2]string{"", "Not authorized"}
	errNotFound   = [2]string{"", "Not Found"}
	errReserved   = [2]string{"", "Cannot edit a reserved ticket"}
	errBadVersion = [2]string{"version", "Version must be a whole number of at least 0"}
)

func TestCreate(t *testing.T) {
	e := MustStart(t, appOptions{})
	tests := []struct {
		name        string
		user        string
		body        any
		contentType string
		status      int
		errs        [][2]string // nil with a 4xx: any message
		wantTitle   string
		wantPrice   float64
	}{
		{name: "create201", user: "u1", body: `{"title":"concert","price":20}`, status: 201, wantTitle: "concert", wantPrice: 20},
		{name: "create201 price as a numeric string (original client)", user: "u1", body: `{"title":"concert","price":"20.50"}`, status: 201, wantTitle: "concert", wantPrice: 20.5},
		{name: "create201 content type with charset", user: "u1", body: `{"title":"x","price":0.5}`, contentType: "application/json; charset=utf-8", status: 201, wantTitle: "x", wantPrice: 0.5},
		{name: "create401 anonymous", body: `{"title":"concert","price":20}`, status: 401, errs: [][2]string{errNotAuth}},
		{name: "create400 title missing", user: "u1", body: `{"price":20}`, status: 400, errs: [][2]string{errTitle}},
		{name: "create400 title blank", user: "u1", body: `{"title":"   ","price":20}`, status: 400, errs: [][2]string{errTitle}},
		{name: "create400 title empty", user: "u1", body: `{"title":"","price":20}`, status: 400, errs: [][2]string{errTitle}},
		{name: "create400 title a number", user: "u1", body: `{"title":5,"price":20}`, status: 400, errs: [][2]string{errTitle}},
		{name: "create400 title null", user: "u1", body: `{"title":null,"price":20}`, status: 400, errs: [][2]string{errTitle}},
		{name: "create400 title an object", user: "u1", body: `{"title":{"a":1},"price":20}`, status: 400, errs: [][2]string{errTitle}},
		{name: "create400 price missing", user: "u1", body: `{"title":"concert"}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price abc", user: "u1", body: `{"title":"concert","price":"abc"}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price NaN string", user: "u1", body: `{"title":"concert","price":"NaN"}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price zero", user: "u1", body: `{"title":"concert","price":0}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price negative", user: "u1", body: `{"title":"concert","price":-10}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price negative string", user: "u1", body: `{"title":"concert","price":"-1"}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price a boolean", user: "u1", body: `{"title":"concert","price":true}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price null", user: "u1", body: `{"title":"concert","price":null}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 price too large for a number", user: "u1", body: `{"title":"concert","price":1e400}`, status: 400, errs: [][2]string{errPrice}},
		{name: "create400 both fields", user: "u1", body: `{}`, status: 400, errs: [][2]string{errTitle, errPrice}},
		{name: "create400 malformed JSON", user: "u1", body: `{"title":"concert",`, status: 400},
		{name: "create400 not an object", user: "u1", body: `[1,2]`, status: 400},
		{name: "create400 empty body", user: "u1", body: ``, status: 400},
		{name: "create400 trailing data", user: "u1", body: `{"title":"a","price":1} {}`, status: 400},
		{name: "create415 text/plain", user: "u1", body: `{"title":"concert","price":20}`, contentType: "text/plain", status: 415},
		{name: "create413 huge title", user: "u1", body: `{"title":"` + strings.Repeat("x", 20<<10) + `","price":20}`, status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.app.do(t, req{Method: "POST", Path: "/api/tickets", User: tt.user, Body: tt.body, ContentType: tt.contentType})
			if tt.status != 201 {
				wantErrors(t, r, tt.status, tt.errs...)
				return
			}
			if r.Status != 201 {
				t.Fatalf("status = %d, body %s", r.Status, r.Body)
			}
			got := decodeJSON[ticketJSON](t, r)
			if !hex24.MatchString(got.ID) || got.Title != tt.wantTitle || got.Price != tt.wantPrice ||
				got.UserID != tt.user || got.Version != 0 || got.OrderID != "" {
				t.Fatalf("created %+v", got)
			}
			if strings.Contains(string(r.Body), "orderId") {
				t.Fatalf("a free ticket shows orderId: %s", r.Body)
			}
			// Stored, and announced by ticket:created.
			if g := e.app.MustGet(t, got.ID); g != got {
				t.Fatalf("GET = %+v, want %+v", g, got)
			}
			ev := e.obs.waitVersions(t, got.ID, 0)[0]
			if ev.Subject != string(events.SubjectTicketCreated) || ev.Ticket.Title != got.Title ||
				ev.Ticket.Price != got.Price || ev.Ticket.UserID != got.UserID {
				t.Fatalf("event %+v for %+v", ev, got)
			}
		})
	}
}

func TestGet(t *testing.T) {
	e := MustStart(t, appOptions{})
	tk := e.app.MustCreate(t, "u1", "concert", 20)
	tests := []struct {
		name   string
		id     string
		status int
	}{
		{"get200", tk.ID, 200},
		{"get404 unknown id", "0123456789abcdef01234567", 404},
		{"get404 malformed id", "not-an-id", 404},
		{"get404 id too long", tk.ID + "00", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.app.do(t, req{Method: "GET", Path: "/api/tickets/" + tt.id})
			if tt.status != 200 {
				wantErrors(t, r, tt.status, errNotFound)
				return
			}
			if got := decodeJSON[ticketJSON](t, r); r.Status != 200 || got != tk {
				t.Fatalf("GET = %d %+v, want %+v", r.Status, got, tk)
			}
			if r.Header.Get("ETag") != `"0"` {
				t.Fatalf("ETag = %q", r.Header.Get("ETag"))
			}
		})
	}
}

func TestList(t *testing.T) {
	e := MustStart(t, appOptions{})
	if r := e.app.do(t, req{Method: "GET", Path: "/api/tickets"}); r.Status != 200 || strings.TrimSpace(string(r.Body)) != "[]" {
		t.Fatalf("empty list = %d %s", r.Status, r.Body)
	}
	var created []ticketJSON
	for i := range 5 {
		created = append(created, e.app.MustCreate(t, "u1", fmt.Sprintf("t%d", i), float64(i+1)))
	}
	// Reserve t1: it leaves the list.
	publishOrderCreated(t, e.pub, newID(), created[1].ID)
	testenv.Eventually(t, eventualWait, "t1 reserved", func() bool { return e.app.MustGet(t, created[1].ID).OrderID != "" })

	ids := func(r response) []string {
		var out []string
		for _, tk := range decodeJSON[[]ticketJSON](t, r) {
			out = append(out, tk.Title)
		}
		return out
	}
	tests := []struct {
		name   string
		query  string
		status int
		want   []string
	}{
		{"list200 unreserved newest first", "", 200, []string{"t4", "t3", "t2", "t0"}},
		{"list200 limit", "?limit=2", 200, []string{"t4", "t3"}},
		{"list200 max limit", "?limit=1000", 200, []string{"t4", "t3", "t2", "t0"}},
		{"list400 limit zero", "?limit=0", 400, nil},
		{"list400 limit negative", "?limit=-1", 400, nil},
		{"list400 limit not a number", "?limit=abc", 400, nil},
		{"list400 limit above max", "?limit=1001", 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.app.do(t, req{Method: "GET", Path: "/api/tickets" + tt.query})
			if tt.status != 200 {
				wantErrors(t, r, tt.status, [2]string{"limit", "Limit must be an integer from 1 to 1000"})
				return
			}
			if got := ids(r); r.Status != 200 || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("list = %d %v, want %v", r.Status, got, tt.want)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	e := MustStart(t, appOptions{})
	reserved := e.app.MustCreate(t, "owner", "reserved", 10)
	order := newID()
	publishOrderCreated(t, e.pub, order, reserved.ID)
	testenv.Eventually(t, eventualWait, "reserved", func() bool { return e.app.MustGet(t, reserved.ID).OrderID == order })

	tests := []struct {
		name   string
		user   string
		id     string // "" = a fresh ticket of "owner"
		body   any
		header map[string]string
		status int
		errs   [][2]string
	}{
		{name: "update200", user: "owner", body: `{"title":"new","price":30}`, status: 200},
		{name: "update200 with the current version", user: "owner", body: `{"title":"new","price":30,"version":0}`, status: 200},
		{name: "update200 with If-Match", user: "owner", body: `{"title":"new","price":30}`, header: map[string]string{"If-Match": `"0"`}, status: 200},
		{name: "update401 anonymous", body: `{"title":"new","price":30}`, status: 401, errs: [][2]string{errNotAuth}},
		{name: "update401 not the owner", user: "other", body: `{"title":"new","price":30}`, status: 401, errs: [][2]string{errNotAuth}},
		{name: "update401 not the owner of a reserved ticket", user: "other", id: reserved.ID, body: `{"title":"new","price":30}`, status: 401, errs: [][2]string{errNotAuth}},
		{name: "update404 unknown id", user: "owner", id: "0123456789abcdef01234567", body: `{"title":"new","price":30}`, status: 404, errs: [][2]string{errNotFound}},
		{name: "update404 malformed id", user: "owner", id: "zzz", body: `{"title":"new","price":30}`, status: 404, errs: [][2]string{errNotFound}},
		{name: "update400 reserved", user: "owner", id: reserved.ID, body: `{"title":"new","price":30}`, status: 400, errs: [][2]string{errReserved}},
		{name: "update400 title", user: "owner", body: `{"title":"","price":30}`, status: 400, errs: [][2]string{errTitle}},
		{name: "update400 price", user: "owner", body: `{"title":"new","price":-5}`, status: 400, errs: [][2]string{errPrice}},
		{name: "update400 price abc", user: "owner", body: `{"title":"new","price":"abc"}`, status: 400, errs: [][2]string{errPrice}},
		{name: "update400 both", user: "owner", body: `{}`, status: 400, errs: [][2]string{errTitle, errPrice}},
		{name: "update400 version not a number", user: "owner", body: `{"title":"new","price":30,"version":"x"}`, status: 400, errs: [][2]string{errBadVersion}},
		{name: "update400 validation before ownership", user: "other", body: `{"title":"","price":30}`, status: 400, errs: [][2]string{errTitle}},
		{name: "update400 malformed JSON", user: "owner", body: `{`, status: 400},
		{name: "update415", user: "owner", body: `title=new`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 415},
		{name: "update409 stale version", user: "owner", body: `{"title":"new","price":30,"version":7}`, status: 409},
		{name: "update409 stale If-Match", user: "owner", body: `{"title":"new","price":30}`, header: map[string]string{"If-Match": `"3"`}, status: 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			var before ticketJSON
			if id == "" {
				before = e.app.MustCreate(t, "owner", "old", 10)
				id = before.ID
			} else if tt.status != 404 {
				before = e.app.MustGet(t, id)
			}
			r := e.app.do(t, req{Method: "PUT", Path: "/api/tickets/" + id, User: tt.user, Body: tt.body, Header: tt.header})
			if tt.status != 200 {
				wantErrors(t, r, tt.status, tt.errs...)
				if tt.status != 404 {
					if after := e.app.MustGet(t, id); after != before {
						t.Fatalf("refused PUT changed the ticket: %+v -> %+v", before, after)
					}
				}
				return
			}
			if r.Status != 200 {
				t.Fatalf("status = %d, body %s", r.Status, r.Body)
			}
			got := decodeJSON[ticketJSON](t, r)
			want := ticketJSON{ID: id, Title: "new", Price: 30, UserID: "owner", Version: before.Version + 1}
			if got != want {
				t.Fatalf("PUT = %+v, want %+v", got, want)
			}
			if g := e.app.MustGet(t, id); g != want {
				t.Fatalf("GET after PUT = %+v, want %+v", g, want)
			}
			evs := e.obs.waitVersions(t, id, 1)
			if u := evs[1]; u.Subject != string(events.SubjectTicketUpdated) || u.Ticket.Title != "new" || u.Ticket.Price != 30 {
				t.Fatalf("ticket:updated = %+v", u)
			}
		})
	}
}

// TestConcurrentUpdates: PUTs racing on one ticket. With the version they
// edited, exactly one per version wins and the others get 409; without it,
// each applies in turn on its own version and none is lost.
func TestConcurrentUpdates(t *testing.T) {
	const n = 30
	e := MustStart(t, appOptions{})
	race := func(t *testing.T, id string, withVersion bool) []response {
		var wg sync.WaitGroup
		out := make([]response, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := map[string]any{"title": fmt.Sprintf("edit-%d", i), "price": i + 1}
				if withVersion {
					body["version"] = 0
				}
				<-start
				out[i] = e.app.do(t, req{Method: "PUT", Path: "/api/tickets/" + id, User: "owner", Body: body})
			}()
		}
		close(start)
		wg.Wait()
		return out
	}

	t.Run("with the version: one winner", func(t *testing.T) {
		tk := e.app.MustCreate(t, "owner", "race", 1)
		var won []ticketJSON
		for _, r := range race(t, tk.ID, true) {
			switch r.Status {
			case 200:
				won = append(won, decodeJSON[ticketJSON](t, r))
			case 409:
			default:
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
		}
		if len(won) != 1 {
			t.Fatalf("%d PUTs on version 0 succeeded, want exactly 1", len(won))
		}
		if got := e.app.MustGet(t, tk.ID); got != won[0] || got.Version != 1 {
			t.Fatalf("stored %+v, winner %+v", got, won[0])
		}
		e.obs.waitVersions(t, tk.ID, 1)
	})

	t.Run("without a version: all apply in turn", func(t *testing.T) {
		tk := e.app.MustCreate(t, "owner", "race", 1)
		byVersion := map[int64]ticketJSON{}
		for _, r := range race(t, tk.ID, false) {
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			got := decodeJSON[ticketJSON](t, r)
			if _, dup := byVersion[got.Version]; dup {
				t.Fatalf("two PUTs answered version %d", got.Version)
			}
			byVersion[got.Version] = got
		}
		for v := int64(1); v <= n; v++ {
			if _, ok := byVersion[v]; !ok {
				t.Fatalf("no PUT answered version %d: %v", v, byVersion)
			}
		}
		final := e.app.MustGet(t, tk.ID)
		if final != byVersion[n] {
			t.Fatalf("stored %+v, last PUT answered %+v", final, byVersion[n])
		}
		// Every version's event carries exactly what that PUT answered.
		for _, ev := range e.obs.waitVersions(t, tk.ID, n)[1:] {
			want := byVersion[ev.Ticket.Version]
			if ev.Ticket.Title != want.Title || ev.Ticket.Price != want.Price {
				t.Fatalf("event %+v, PUT answered %+v", ev.Ticket, want)
			}
		}
	})
}

func TestHealth(t *testing.T) {
	e := MustStart(t, appOptions{})
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.app.do(t, req{Method: "GET", Path: p}); r.Status != http.StatusOK {
			t.Fatalf("%s = %d %s", p, r.Status, r.Body)
		}
	}
	if r := e.app.do(t, req{Method: "DELETE", Path: "/api/tickets"}); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE = %d", r.Status)
	}
}
