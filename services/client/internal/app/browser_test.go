package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests drive Debian's chromium (CHROMIUM env: another binary)
// through the whole system. Without a browser they fail, saying how to get
// one; CLIENT_BROWSER_TESTS=skip is the one explicit way to skip them.
//
// A failing test saves a screenshot of each of its pages (browser tabs) in
// CLIENT_SCREENSHOT_DIR (default: <tmp>/ticketing-client-screenshots) and
// logs the path. With CLIENT_DOCS_SCREENSHOTS=<dir> set, the tests also
// write the screenshots of the main pages that docs/client holds.

// chromium returns the browser to run.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CLIENT_BROWSER_TESTS") == "skip" {
		t.Skip("no chromium, and CLIENT_BROWSER_TESTS=skip")
	}
	t.Fatal("the browser tests need Chromium and none is installed: apt-get install -y chromium " +
		"(or set CHROMIUM to a Chrome binary; CLIENT_BROWSER_TESTS=skip skips these tests explicitly)")
	return ""
}

// user is one person at the browser: a Chromium of its own (its own
// profile, so its own cookies), headless.
type user struct {
	t     *testing.T
	name  string
	ctx   context.Context
	base  string
	email string
}

func newUser(t *testing.T, s *stack, name string) *user {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.WindowSize(1024, 768),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	u := &user{t: t, name: name, ctx: ctx, base: s.URL,
		email: name + "@example.com"} // each test has its own auth database
	t.Cleanup(func() {
		if t.Failed() {
			u.screenshot(failureDir(), strings.NewReplacer("/", "_").Replace(t.Name())+"-"+name+".png")
		}
		cancel()
		cancelA()
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	return u
}

func failureDir() string {
	if d := os.Getenv("CLIENT_SCREENSHOT_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "ticketing-client-screenshots")
}

func (u *user) screenshot(dir, file string) {
	var png []byte
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		u.t.Logf("%s: no screenshot: %v", u.name, err)
		return
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, png, 0o644); err == nil {
			u.t.Logf("%s: screenshot of the page at failure: %s", u.name, p)
			return
		}
	}
	u.t.Logf("%s: could not write the screenshot to %s", u.name, dir)
}

// docShot writes the current page to CLIENT_DOCS_SCREENSHOTS/<name>.png
// when that is set.
func (u *user) docShot(name string) {
	if dir := os.Getenv("CLIENT_DOCS_SCREENSHOTS"); dir != "" {
		u.screenshot(dir, name+".png")
	}
}

// do runs the actions, failing the test with what they were for; each step
// waits for what it needs on the page (at most within).
func (u *user) do(what string, within time.Duration, actions ...chromedp.Action) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, within)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		u.t.Fatalf("%s: %s: %v (url %s)", u.name, what, err, u.url())
	}
}

func (u *user) url() string {
	var loc string
	ctx, cancel := context.WithTimeout(u.ctx, 2*time.Second)
	defer cancel()
	_ = chromedp.Run(ctx, chromedp.Location(&loc))
	return loc
}

func (u *user) text(sel string) string {
	u.t.Helper()
	var s string
	u.do("read "+sel, 20*time.Second, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

func (u *user) open(path, waitFor string) {
	u.t.Helper()
	u.do("open "+path, 30*time.Second, chromedp.Navigate(u.base+path), chromedp.WaitVisible(waitFor, chromedp.ByQuery))
}

// fill sets the form's fields and submits it with the button submit, then
// waits for waitFor on the next page.
func (u *user) fill(fields map[string]string, submit, waitFor string) {
	u.t.Helper()
	var acts []chromedp.Action
	for sel, v := range fields {
		acts = append(acts, chromedp.SetValue(sel, v, chromedp.ByQuery))
	}
	acts = append(acts, chromedp.Click(submit, chromedp.ByQuery), chromedp.WaitVisible(waitFor, chromedp.ByQuery))
	u.do("submit "+submit, 30*time.Second, acts...)
}

func (u *user) wantText(sel, want string) {
	u.t.Helper()
	if got := u.text(sel); !strings.Contains(got, want) {
		u.t.Fatalf("%s: %s says %q, want %q", u.name, sel, got, want)
	}
}

// until waits for a JavaScript condition on the page to hold.
func (u *user) until(what string, within time.Duration, js string) {
	u.t.Helper()
	u.do("wait for "+what, within, chromedp.Poll(js, nil, chromedp.WithPollingInterval(100*time.Millisecond)))
}

func (u *user) signUp(password string) {
	u.t.Helper()
	u.open("/auth/signup", "#email")
	u.fill(map[string]string{"#email": u.email, "#password": password}, "#submit", "#current-user")
	u.wantText("#current-user", u.email)
}

// sell lists a ticket and returns its id (from the ticket page's URL).
func (u *user) sell(title, price string) string {
	u.t.Helper()
	u.open("/tickets/new", "#title")
	u.fill(map[string]string{"#title": title, "#price": price}, "#submit", "#edit")
	m := regexp.MustCompile(`/tickets/([0-9a-f]{24})$`).FindStringSubmatch(u.url())
	if m == nil {
		u.t.Fatalf("%s: after selling, at %s, not a ticket page", u.name, u.url())
	}
	return m[1]
}

// purchase orders the ticket from its page and returns on the order page.
// Right after a ticket is listed the orders service may not know it yet
// (ticket:created is on its way): the page says so, and the user tries
// again, as a person would, until the order page shows.
func (u *user) purchase(ticketID string) {
	u.t.Helper()
	u.open("/tickets/"+ticketID, "#purchase")
	deadline := time.Now().Add(30 * time.Second)
	for {
		u.do("purchase", 30*time.Second,
			// The message of a previous round must not pass for this one's.
			chromedp.Evaluate(`document.getElementById("error")?.remove()`, nil),
			chromedp.Click("#purchase", chromedp.ByQuery),
			chromedp.WaitVisible("#order-status, #error", chromedp.ByQuery))
		var onOrder bool
		u.do("look at the page", 5*time.Second, chromedp.Evaluate(`!!document.getElementById("order-status")`, &onOrder))
		if onOrder {
			return
		}
		msg := u.text("#error")
		if !strings.Contains(msg, "only just put on sale") || time.Now().After(deadline) {
			u.t.Fatalf("%s: purchase: %q", u.name, msg)
		}
	}
}

// TestSellBuyPay: one user signs up (after a refused attempt) and sells a
// ticket (after a refused one); a second user buys it, sees the countdown,
// is declined, pays; the first user's list loses the ticket while they
// watch; the ticket's page says it is reserved; an owner edits a ticket.
func TestSellBuyPay(t *testing.T) {
	chromium(t) // before the stack: a missing browser fails (or skips) at once
	s := startStack(t, 10*time.Minute)
	seller := newUser(t, s, "seller")
	buyer := newUser(t, s, "buyer")

	// Bad input: the API's messages beside their fields.
	seller.open("/auth/signup", "#email")
	seller.fill(map[string]string{"#email": "not-an-email", "#password": "x"}, "#submit", "#email-error")
	seller.wantText("#email-error", "Email must be valid")
	seller.wantText("#password-error", "Password must be between 4 and 20 characters")
	seller.docShot("signup-errors")
	seller.signUp("secret-1")

	seller.open("/tickets/new", "#title")
	seller.fill(map[string]string{"#title": "  ", "#price": "-5"}, "#submit", "#title-error")
	seller.wantText("#title-error", "Title is required")
	seller.wantText("#price-error", "Price must be greater than 0")
	seller.docShot("sell-errors")
	title := fmt.Sprintf("Concert %d", time.Now().UnixNano()%100000)
	ticketID := seller.sell(title, "20")
	seller.wantText("#ticket-price", "$20.00")
	other := seller.sell("Theatre night", "35.50")

	// The seller watches the list (it refreshes itself).
	row := `tr[data-ticket-id="` + ticketID + `"]`
	seller.open("/", row)
	seller.wantText(row, title)
	seller.docShot("tickets")

	// The buyer reserves it: the order page counts down.
	buyer.signUp("secret-2")
	buyer.open("/tickets/"+ticketID, "#purchase")
	buyer.docShot("ticket")
	buyer.purchase(ticketID)
	buyer.wantText("#order-status", "created")
	buyer.until("the countdown", 10*time.Second, `/^\d+:\d\d$/.test(document.getElementById("countdown").textContent)`)
	buyer.docShot("order")

	// The first user sees it gone, without reloading.
	seller.do("the reserved ticket leaves the list", 30*time.Second, chromedp.WaitNotPresent(row, chromedp.ByQuery))
	seller.wantText(`tr[data-ticket-id="`+other+`"]`, "Theatre night")
	seller.open("/tickets/"+ticketID, "#reserved")
	seller.wantText("#ticket-status", "Reserved")
	seller.docShot("ticket-reserved")

	// A declined card: Stripe's message, nothing changes.
	buyer.fill(map[string]string{"#token": "pm_card_chargeDeclined"}, "#pay", "#error")
	buyer.wantText("#error", "Your card was declined.")
	buyer.wantText("#order-status", "created")
	buyer.docShot("order-declined")

	// Paying: accepted, and the order completes on screen.
	buyer.fill(map[string]string{"#token": "pm_card_visa"}, "#pay", "#notice")
	buyer.wantText("#notice", "Payment accepted")
	buyer.until("the order is complete", 30*time.Second, `document.getElementById("order-status").textContent === "complete"`)
	buyer.wantText("#order-message", "Paid")
	buyer.docShot("order-paid")

	buyer.open("/orders", "tbody tr")
	buyer.wantText("tbody tr", title)
	buyer.wantText("tbody tr", "complete")
	buyer.docShot("orders")

	// The owner edits their other ticket; a bad price is refused first.
	seller.open("/mytickets", `tr[data-ticket-id="`+other+`"]`)
	if n := seller.count("tbody tr"); n != 1 {
		t.Fatalf("my tickets lists %d tickets, want 1 (the sold one is not for sale)", n)
	}
	seller.docShot("mytickets")
	seller.open("/tickets/"+other+"/edit", "#title")
	seller.fill(map[string]string{"#price": "abc"}, "#submit", "#price-error")
	seller.wantText("#price-error", "Price must be greater than 0")
	seller.fill(map[string]string{"#title": "Theatre night, row 3", "#price": "40"}, "#submit", "#edit")
	seller.wantText("h1", "Theatre night, row 3")
	seller.wantText("#ticket-price", "$40.00")

	// The page at phone width.
	seller.do("phone width", 20*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(`tr[data-ticket-id="`+other+`"]`, chromedp.ByQuery))
	var overflow bool
	seller.do("measure", 5*time.Second, chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow))
	if overflow {
		t.Error("the list is wider than a phone's screen")
	}
	seller.docShot("tickets-phone")

	// Signing out.
	seller.do("sign out", 20*time.Second, chromedp.EmulateViewport(1024, 768), chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible("#signout", chromedp.ByQuery), chromedp.Click("#signout", chromedp.ByQuery),
		chromedp.WaitVisible(`a[href="/auth/signin"]`, chromedp.ByQuery))
	seller.open("/orders", "#email") // signed out: sent to sign in

	// A ticket that does not exist: the API's 404, said in words.
	seller.open("/tickets/0123456789abcdef01234567", "#error")
	seller.wantText("#error", "Not found")
}

func (u *user) count(sel string) int {
	u.t.Helper()
	var n int
	u.do("count "+sel, 5*time.Second, chromedp.Evaluate(fmt.Sprintf(`document.querySelectorAll(%q).length`, sel), &n))
	return n
}

// TestUnpaidOrderExpires: with a short EXPIRATION_WINDOW, an order left
// unpaid is cancelled on screen (the page follows it), and the ticket is
// for sale again.
func TestUnpaidOrderExpires(t *testing.T) {
	const window = 15 * time.Second
	chromium(t)
	s := startStack(t, window)
	seller := newUser(t, s, "seller")
	buyer := newUser(t, s, "buyer")
	seller.signUp("secret-1")
	ticketID := seller.sell("Late show", "12")
	buyer.signUp("secret-2")
	buyer.purchase(ticketID)
	buyer.wantText("#order-status", "created")
	buyer.until("the order is cancelled", window+45*time.Second, `document.getElementById("order-status").textContent === "cancelled"`)
	buyer.wantText("#order-message", "cancelled")
	var payHidden bool
	buyer.do("look at the pay form", 5*time.Second, chromedp.Evaluate(`document.getElementById("pay-form").hidden`, &payHidden))
	if !payHidden {
		t.Error("the pay form is still shown for a cancelled order")
	}
	buyer.docShot("order-expired")
	// The ticket is for sale again.
	buyer.open("/", `tr[data-ticket-id="`+ticketID+`"]`)
}
