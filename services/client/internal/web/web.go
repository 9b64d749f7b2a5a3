// Package web is the web client's HTTP port: the server-rendered pages
// (templates/, html/template, embedded in the binary) and their static
// files (static/: the stylesheet and three small scripts, no build step).
//
// Every page is made from calls to the public API through package api, as
// the user's browser would make them, with the user's session cookie; the
// API's own answers decide everything (validation included), and every
// failure is rendered as a page with a readable message and the API's
// status, never a blank page.
//
// Forms are plain HTML POSTs followed by a redirect (303) on success, so a
// reload never repeats a purchase or a payment. They are protected from
// cross-site requests twice over: the session cookie is SameSite=Lax (the
// browser does not send it with another site's POST), and
// http.CrossOriginProtection refuses cross-origin POSTs outright.
package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/ticketing-go/ticketing/services/client/internal/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// listLimit is how many tickets the list pages ask for; "my tickets" asks
// for the API's maximum, since it filters the list (see myTickets).
const (
	listLimit   = 100
	myListLimit = 1000
)

// Test payment methods offered when no Stripe publishable key is set:
// Stripe's documented test methods, which a Stripe test-mode key and
// stripe-mock accept (stripe-mock accepts any, and declines none).
var testCards = []testCard{
	{"pm_card_visa", "Visa ending 4242 (succeeds)"},
	{"pm_card_mastercard", "Mastercard ending 4444 (succeeds)"},
	{"pm_card_chargeDeclined", "Card ending 0002 (declined)"},
}

type testCard struct{ Token, Label string }

// Options configures the site.
type Options struct {
	// StripePublishableKey switches the payment form to Stripe.js (Payment
	// Element); empty offers testCards.
	StripePublishableKey string
	Log                  *slog.Logger
}

// Site serves the pages.
type Site struct {
	api   *api.Client
	opt   Options
	log   *slog.Logger
	pages map[string]*template.Template
}

// pageNames are the templates/*.html files that are whole pages (each
// rendered inside layout.html).
var pageNames = []string{"index", "auth", "ticket", "ticket_form", "order", "orders", "mytickets", "error"}

// New parses the templates.
func New(c *api.Client, opt Options) (*Site, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	s := &Site{api: c, opt: opt, log: opt.Log, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"money": func(p float64) string { return fmt.Sprintf("$%.2f", p) },
		"rfc3339": func(t time.Time) string {
			return t.UTC().Format(time.RFC3339Nano)
		},
		"clock": func(t time.Time) string { return t.UTC().Format("15:04:05 UTC") },
	}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return s, nil
}

// Mount adds the pages to r (the base router: health, readiness, metrics).
func (s *Site) Mount(r chi.Router) {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	r.Get("/static/*", func(w http.ResponseWriter, r *http.Request) {
		// Short: the files change with a deploy and carry no version in
		// their names.
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, s.base(r), &api.Error{Status: http.StatusForbidden, Errors: []api.FieldError{{
			Message: "This form was sent from another site, so it was refused."}}})
	}))
	r.Group(func(r chi.Router) {
		r.Use(securityHeaders, cop.Handler, limitBody)
		r.Get("/", s.index)
		r.Get("/partials/tickets", s.ticketsPartial)
		r.Get("/auth/signup", s.authForm("signup"))
		r.Post("/auth/signup", s.authSubmit("signup"))
		r.Get("/auth/signin", s.authForm("signin"))
		r.Post("/auth/signin", s.authSubmit("signin"))
		r.Post("/auth/signout", s.signOut)
		r.Get("/tickets/new", s.newTicketForm)
		r.Post("/tickets/new", s.createTicket)
		r.Get("/tickets/{id}", s.ticket)
		r.Post("/tickets/{id}/purchase", s.purchase)
		r.Get("/tickets/{id}/edit", s.editTicketForm)
		r.Post("/tickets/{id}/edit", s.updateTicket)
		r.Get("/orders", s.orders)
		r.Get("/orders/{id}", s.order)
		r.Get("/orders/{id}/status", s.orderStatus)
		r.Post("/orders/{id}/pay", s.pay)
		r.Post("/orders/{id}/cancel", s.cancel)
		r.Get("/mytickets", s.myTickets)
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.fail(w, r, s.base(r), &api.Error{Status: http.StatusNotFound, Errors: []api.FieldError{{Message: "There is no such page."}}})
		})).ServeHTTP(w, r)
	})
}

// securityHeaders: scripts only from the site and Stripe.js; Stripe's
// Payment Element runs in frames of js.stripe.com and calls api.stripe.com.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' https://js.stripe.com; "+
			"frame-src https://js.stripe.com https://hooks.stripe.com; connect-src 'self' https://api.stripe.com; "+
			"img-src 'self' data:; style-src 'self' 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// maxForm bounds a form's body: the largest is a ticket's title and price,
// which the API bounds at 16 KiB anyway.
const maxForm = 64 << 10

// limitBody caps request bodies; a larger form reads as empty (ParseForm
// fails) and the API's validation says what is missing.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		next.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title  string
	User   *api.User
	Notice string            // a success message
	Error  string            // a message about no field
	Fields map[string]string // messages beside their fields
	Form   map[string]string // the values the user typed
	Data   any               // the page's own
}

// session is what the client forwards of the browser's request.
func session(r *http.Request) api.Session {
	s := api.Session{RequestID: middleware.GetReqID(r.Context())}
	if c, err := r.Cookie(api.CookieName); err == nil {
		s.Token = c.Value
	}
	// auth limits sign-in attempts per client address, taking it from
	// X-Forwarded-For as appended by the one proxy it trusts
	// (TRUSTED_PROXIES=1). The client sits behind that same proxy (the
	// ingress, the local stack's proxy), so it passes the chain on as the
	// proxy made it: in Kubernetes, where the client calls auth-srv
	// directly, auth sees the browser's address, not the client's or the
	// ingress's. (Through the local proxy, which appends again, auth sees
	// the client's local address, as it sees every local caller's.)
	if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		s.ForwardIP = strings.Join(prior, ", ")
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		s.ForwardIP = host
	}
	return s
}

// base returns a page with the signed-in user. A failure of auth does not
// stop a page that needs no user: it says so and goes on signed out.
func (s *Site) base(r *http.Request) page {
	p := page{Fields: map[string]string{}, Form: map[string]string{}}
	u, err := s.api.CurrentUser(r.Context(), session(r))
	if err != nil {
		p.Error = "Could not check who is signed in: " + api.AsError(err).General()
	}
	p.User = u
	return p
}

// render writes the page (buffered: a template error never sends half a
// page).
func (s *Site) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("render", "page", name, "err", err, "request_id", middleware.GetReqID(r.Context()))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("Something went wrong while drawing this page. Please go back and try again.\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // pages show the user's own data
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail renders the error page for err, with its status.
func (s *Site) fail(w http.ResponseWriter, r *http.Request, p page, err error) {
	e := api.AsError(err)
	p.Title = http.StatusText(e.Status)
	p.Error = messageOf(e)
	s.render(w, r, e.Status, "error", p)
}

// messageOf is the whole readable message of an error (field messages
// included, for pages that have no such field).
func messageOf(e *api.Error) string {
	msgs := make([]string, 0, len(e.Errors))
	for _, fe := range e.Errors {
		msgs = append(msgs, fe.Message)
	}
	if e.Status == http.StatusNotFound && len(msgs) == 1 && msgs[0] == "Not Found" {
		return "Not found: it does not exist (or no longer does)."
	}
	return strings.Join(msgs, " ")
}

// signInFirst sends a signed-out user to the sign-in page, back here after.
func signInFirst(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/auth/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

// localPath accepts only a path of this site as a place to go back to.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (s *Site) index(w http.ResponseWriter, r *http.Request) {
	p := s.base(r)
	p.Title = "Tickets for sale"
	list, err := s.api.ListTickets(r.Context(), session(r), listLimit)
	if err != nil {
		s.fail(w, r, p, err)
		return
	}
	p.Data = list
	s.render(w, r, http.StatusOK, "index", p)
}

// ticketsPartial is the list alone, for list.js to refresh the index page
// with (a ticket that becomes reserved disappears without a reload).
func (s *Site) ticketsPartial(w http.ResponseWriter, r *http.Request) {
	list, err := s.api.ListTickets(r.Context(), session(r), listLimit)
	if err != nil {
		e := api.AsError(err)
		http.Error(w, messageOf(e), e.Status)
		return
	}
	var buf bytes.Buffer
	if err := s.pages["index"].ExecuteTemplate(&buf, "ticket-list", list); err != nil {
		s.log.Error("render", "page", "ticket-list", "err", err)
		http.Error(w, "Something went wrong", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = buf.WriteTo(w)
}

type authPage struct {
	Mode, Next string
}

func (s *Site) authForm(mode string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := s.base(r)
		p.Title = map[string]string{"signup": "Sign up", "signin": "Sign in"}[mode]
		p.Data = authPage{Mode: mode, Next: localPath(r.URL.Query().Get("next"))}
		s.render(w, r, http.StatusOK, "auth", p)
	}
}

func (s *Site) authSubmit(mode string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		cr := api.Credentials{Email: r.PostForm.Get("email"), Password: r.PostForm.Get("password")}
		next := localPath(r.PostForm.Get("next"))
		call := s.api.SignIn
		if mode == "signup" {
			call = s.api.SignUp
		}
		cookies, err := call(r.Context(), session(r), cr)
		if err == nil {
			for _, c := range cookies {
				w.Header().Add("Set-Cookie", c)
			}
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		e := api.AsError(err)
		p := page{Fields: e.Fields(), Form: map[string]string{"email": cr.Email}, Error: e.General()}
		if p.Error == "" && len(p.Fields) == 0 {
			p.Error = messageOf(e)
		}
		p.Title = map[string]string{"signup": "Sign up", "signin": "Sign in"}[mode]
		p.Data = authPage{Mode: mode, Next: next}
		s.render(w, r, e.Status, "auth", p)
	}
}

func (s *Site) signOut(w http.ResponseWriter, r *http.Request) {
	cookies, err := s.api.SignOut(r.Context(), session(r))
	if err != nil {
		s.fail(w, r, s.base(r), err)
		return
	}
	for _, c := range cookies {
		w.Header().Add("Set-Cookie", c)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

type ticketFormPage struct {
	Edit    bool
	Ticket  api.Ticket
	Version int64
}

func (s *Site) newTicketForm(w http.ResponseWriter, r *http.Request) {
	p := s.base(r)
	if p.User == nil && p.Error == "" {
		signInFirst(w, r)
		return
	}
	p.Title = "Sell a ticket"
	p.Data = ticketFormPage{}
	s.render(w, r, http.StatusOK, "ticket_form", p)
}

func (s *Site) createTicket(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	in := api.TicketInput{Title: r.PostForm.Get("title"), Price: r.PostForm.Get("price")}
	t, err := s.api.CreateTicket(r.Context(), session(r), in)
	if err == nil {
		http.Redirect(w, r, "/tickets/"+url.PathEscape(t.ID), http.StatusSeeOther)
		return
	}
	p := s.base(r)
	p.Title = "Sell a ticket"
	p.Data = ticketFormPage{}
	s.formError(w, r, p, err, in)
}

// formError re-renders the ticket form with the API's messages beside
// their fields and what the user typed.
func (s *Site) formError(w http.ResponseWriter, r *http.Request, p page, err error, in api.TicketInput) {
	e := api.AsError(err)
	p.Fields = e.Fields()
	p.Error = e.General()
	if p.Error == "" && len(p.Fields) == 0 {
		p.Error = messageOf(e)
	}
	if e.Status == http.StatusUnauthorized && p.User == nil {
		p.Error = "Please sign in first. (" + p.Error + ")"
	}
	p.Form = map[string]string{"title": in.Title, "price": in.Price}
	s.render(w, r, e.Status, "ticket_form", p)
}

type ticketPage struct {
	Ticket api.Ticket
	Mine   bool
}

func (s *Site) ticketPage(r *http.Request, p page) (page, error) {
	t, err := s.api.GetTicket(r.Context(), session(r), chi.URLParam(r, "id"))
	if err != nil {
		return p, err
	}
	p.Title = t.Title
	p.Data = ticketPage{Ticket: t, Mine: p.User != nil && p.User.ID == t.UserID}
	return p, nil
}

func (s *Site) ticket(w http.ResponseWriter, r *http.Request) {
	p, err := s.ticketPage(r, s.base(r))
	if err != nil {
		s.fail(w, r, p, err)
		return
	}
	s.render(w, r, http.StatusOK, "ticket", p)
}

func (s *Site) purchase(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	o, err := s.api.CreateOrder(r.Context(), session(r), id)
	if err == nil {
		http.Redirect(w, r, "/orders/"+url.PathEscape(o.ID), http.StatusSeeOther)
		return
	}
	e := api.AsError(err)
	p, perr := s.ticketPage(r, s.base(r))
	if perr != nil {
		s.fail(w, r, p, perr)
		return
	}
	switch e.Status {
	case http.StatusNotFound:
		// The ticket exists (ticketPage just read it): the orders service
		// has not heard of it yet, which happens for a moment after a
		// ticket is listed (ticket:created is on its way).
		p.Error = "This ticket was only just put on sale and cannot be ordered yet; please try again in a moment."
	case http.StatusUnauthorized:
		p.Error = "Please sign in to purchase this ticket."
	default:
		p.Error = messageOf(e)
	}
	s.render(w, r, e.Status, "ticket", p)
}

func (s *Site) editTicketForm(w http.ResponseWriter, r *http.Request) {
	p := s.base(r)
	if p.User == nil && p.Error == "" {
		signInFirst(w, r)
		return
	}
	t, err := s.api.GetTicket(r.Context(), session(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, p, err)
		return
	}
	p.Title = "Edit " + t.Title
	p.Data = ticketFormPage{Edit: true, Ticket: t, Version: t.Version}
	p.Form = map[string]string{"title": t.Title, "price": fmt.Sprintf("%.2f", t.Price)}
	s.render(w, r, http.StatusOK, "ticket_form", p)
}

func (s *Site) updateTicket(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	id := chi.URLParam(r, "id")
	in := api.TicketInput{Title: r.PostForm.Get("title"), Price: r.PostForm.Get("price")}
	var version int64
	if _, err := fmt.Sscan(r.PostForm.Get("version"), &version); err == nil {
		in.Version = &version
	}
	t, err := s.api.UpdateTicket(r.Context(), session(r), id, in)
	if err == nil {
		http.Redirect(w, r, "/tickets/"+url.PathEscape(t.ID), http.StatusSeeOther)
		return
	}
	p := s.base(r)
	p.Title = "Edit ticket"
	data := ticketFormPage{Edit: true, Ticket: api.Ticket{ID: id}, Version: version}
	if e := api.AsError(err); e.Status == http.StatusConflict {
		// Show the ticket as it is now; the form keeps what the user typed,
		// and a second save applies it to the current version.
		if cur, gerr := s.api.GetTicket(r.Context(), session(r), id); gerr == nil {
			data.Ticket, data.Version = cur, cur.Version
			e.Errors = []api.FieldError{{Message: fmt.Sprintf(
				"Someone changed this ticket while you were editing it: it is now %q at %s. Save again to replace that with what you typed.",
				cur.Title, fmt.Sprintf("$%.2f", cur.Price))}}
			err = e
		}
	}
	p.Data = data
	s.formError(w, r, p, err, in)
}

func (s *Site) orders(w http.ResponseWriter, r *http.Request) {
	p := s.base(r)
	if p.User == nil && p.Error == "" {
		signInFirst(w, r)
		return
	}
	list, err := s.api.ListOrders(r.Context(), session(r))
	if err != nil {
		s.fail(w, r, p, err)
		return
	}
	p.Title = "My orders"
	p.Data = list
	s.render(w, r, http.StatusOK, "orders", p)
}

type orderPage struct {
	Order     api.Order
	Open      bool // can still be paid
	Now       time.Time
	StripeKey string
	Cards     []testCard
	Cents     int64
}

func payable(status string) bool { return status == "created" || status == "awaiting:payment" }

func (s *Site) orderPage(r *http.Request, p page) (page, error) {
	o, err := s.api.GetOrder(r.Context(), session(r), chi.URLParam(r, "id"))
	if err != nil {
		return p, err
	}
	p.Title = "Order for " + o.Ticket.Title
	p.Data = orderPage{
		Order: o, Open: payable(o.Status), Now: time.Now(),
		StripeKey: s.opt.StripePublishableKey, Cards: testCards,
		Cents: int64(o.Ticket.Price*100 + 0.5),
	}
	return p, nil
}

func (s *Site) order(w http.ResponseWriter, r *http.Request) {
	p := s.base(r)
	if p.User == nil && p.Error == "" {
		signInFirst(w, r)
		return
	}
	p, err := s.orderPage(r, p)
	if err != nil {
		s.fail(w, r, p, err)
		return
	}
	if r.URL.Query().Get("paid") == "1" {
		p.Notice = "Payment accepted. Thank you!"
	}
	s.render(w, r, http.StatusOK, "order", p)
}

// orderStatus is the order's status as JSON, for order.js to follow it
// (created -> complete after paying, or -> cancelled at expiry).
func (s *Site) orderStatus(w http.ResponseWriter, r *http.Request) {
	o, err := s.api.GetOrder(r.Context(), session(r), chi.URLParam(r, "id"))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		e := api.AsError(err)
		w.WriteHeader(e.Status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": messageOf(e)})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"status": o.Status})
}

func (s *Site) pay(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	id := chi.URLParam(r, "id")
	token := r.PostForm.Get("token")
	_, err := s.api.Pay(r.Context(), session(r), id, token)
	if err == nil {
		http.Redirect(w, r, "/orders/"+url.PathEscape(id)+"?paid=1", http.StatusSeeOther)
		return
	}
	e := api.AsError(err)
	p, perr := s.orderPage(r, s.base(r))
	if perr != nil {
		s.fail(w, r, p, perr)
		return
	}
	p.Error = messageOf(e)
	if e.Status == http.StatusPaymentRequired {
		p.Error = "The payment was refused: " + p.Error + " Nothing was charged; try another card."
	}
	s.render(w, r, e.Status, "order", p)
}

func (s *Site) cancel(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := s.api.CancelOrder(r.Context(), session(r), id); err != nil {
		e := api.AsError(err)
		p, perr := s.orderPage(r, s.base(r))
		if perr != nil {
			s.fail(w, r, p, perr)
			return
		}
		p.Error = messageOf(e)
		s.render(w, r, e.Status, "order", p)
		return
	}
	http.Redirect(w, r, "/orders/"+url.PathEscape(id), http.StatusSeeOther)
}

// myTickets lists the user's tickets that are for sale. The API has no
// "tickets of a user" route, and the client adds no back door: it filters
// the public list (at most myListLimit tickets), so a ticket of the user's
// that is reserved or sold is not on this page.
func (s *Site) myTickets(w http.ResponseWriter, r *http.Request) {
	p := s.base(r)
	if p.User == nil && p.Error == "" {
		signInFirst(w, r)
		return
	}
	if p.User == nil {
		s.fail(w, r, p, &api.Error{Status: http.StatusBadGateway, Errors: []api.FieldError{{Message: p.Error}}})
		return
	}
	list, err := s.api.ListTickets(r.Context(), session(r), myListLimit)
	if err != nil {
		s.fail(w, r, p, err)
		return
	}
	var mine []api.Ticket
	for _, t := range list {
		if t.UserID == p.User.ID {
			mine = append(mine, t)
		}
	}
	p.Title = "My tickets"
	p.Data = mine
	s.render(w, r, http.StatusOK, "mytickets", p)
}
