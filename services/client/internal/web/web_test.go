package web

import (
	"strings"
	"testing"

	"github.com/ticketing-go/ticketing/services/client/internal/api"
)

// localPath is what stops ?next= from sending a signed-in user to another
// site (an open redirect).
func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "/",
		"/orders":               "/orders",
		"/tickets/abc?x=1":      "/tickets/abc?x=1",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"https://evil.example/": "/",
		"javascript:alert(1)":   "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every page renders with the data its handler gives it, signed in and out.
func TestTemplatesRender(t *testing.T) {
	s, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tk := api.Ticket{ID: "0123456789abcdef01234567", Title: "<b>t</b>", Price: 1.5, UserID: "u"}
	var o api.Order
	o.ID, o.Status, o.Ticket.Title = "0123456789abcdef01234567", "created", "t"
	data := map[string]any{
		"index":       []api.Ticket{tk},
		"auth":        authPage{Mode: "signup", Next: "/"},
		"ticket":      ticketPage{Ticket: tk},
		"ticket_form": ticketFormPage{Edit: true, Ticket: tk},
		"order":       orderPage{Order: o, Open: true, Cards: testCards, StripeKey: "pk_test_x"},
		"orders":      []api.Order{o},
		"mytickets":   []api.Ticket{tk},
		"error":       nil,
	}
	for _, name := range pageNames {
		d, ok := data[name]
		if !ok {
			t.Errorf("no test data for page %s", name)
			continue
		}
		for _, user := range []*api.User{nil, {ID: "u", Email: "u@example.com"}} {
			var b strings.Builder
			p := page{Title: name, User: user, Data: d, Fields: map[string]string{"title": "bad"}, Form: map[string]string{}}
			if err := s.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
				t.Errorf("%s (user %v): %v", name, user, err)
			}
			if strings.Contains(b.String(), "<b>t</b>") {
				t.Errorf("%s: a title is not escaped", name)
			}
		}
	}
}
