package app_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/testenv"
)

var (
	binMu sync.Mutex
	bins  = map[string]string{}
)

// buildBinary builds the command at pkg (relative to the repository root,
// e.g. "./services/tickets") once per test process.
func buildBinary(tb testing.TB, pkg string) string {
	tb.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if bin, ok := bins[pkg]; ok {
		return bin
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "orders-e2e-")
	if err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	bins[pkg] = bin
	return bin
}

// MustStartTickets runs the tickets service binary against the orders
// service's servers (its own database, the same NATS subjects) and returns
// its base URL once it is ready.
func MustStartTickets(tb testing.TB, s *service) string {
	tb.Helper()
	bin := buildBinary(tb, "./services/tickets")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"MONGO_URI="+s.Mongo.URI,
		"MONGO_DB="+s.Mongo.Database+"_tickets",
		"JWT_KEY="+jwtKey,
		"EVENT_BUS="+s.NATS.Bus,
		"NATS_URL="+s.NATS.URL,
		"NATS_CLUSTER_ID="+s.NATS.ClusterID,
		"NATS_CLIENT_ID=tickets-e2e-"+strconv.Itoa(port),
		"NATS_SUBJECT_PREFIX="+s.NATS.SubjectPrefix,
		"LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("tickets service exited: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			tb.Errorf("tickets service did not stop on SIGTERM")
		}
	})
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.Eventually(tb, 30*time.Second, "tickets service ready", func() bool {
		res, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return url
}

type ticketJSON struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	UserID  string  `json:"userId"`
	Version int64   `json:"version"`
	OrderID string  `json:"orderId"`
}

func getTicket(tb testing.TB, url, id string) ticketJSON {
	tb.Helper()
	status, body := request(tb, url, "GET", "/api/tickets/"+id, "", "")
	if status != http.StatusOK {
		tb.Fatalf("get ticket: %d %s", status, body)
	}
	var t ticketJSON
	if err := json.Unmarshal(body, &t); err != nil {
		tb.Fatal(err)
	}
	return t
}

// TestEndToEndWithTickets: create a ticket -> order it -> the ticket shows
// the order and refuses edits -> cancel -> the ticket is editable again, and
// the orders replica follows every version.
func TestEndToEndWithTickets(t *testing.T) {
	s := MustStartService(t, 15*time.Minute)
	tickets := MustStartTickets(t, s)

	status, body := request(t, tickets, "POST", "/api/tickets", "seller", `{"title":"concert","price":20}`)
	if status != http.StatusCreated {
		t.Fatalf("create ticket: %d %s", status, body)
	}
	var tk ticketJSON
	if err := json.Unmarshal(body, &tk); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "orders knows the ticket", func() bool {
		_, err := s.Store.Ticket(context.Background(), tk.ID)
		return err == nil
	})

	o := s.mustOrder(t, "buyer", tk.ID)
	testenv.Eventually(t, 20*time.Second, "ticket reserved by the order", func() bool {
		return getTicket(t, tickets, tk.ID).OrderID == o.ID
	})
	status, body = request(t, tickets, "PUT", "/api/tickets/"+tk.ID, "seller", `{"title":"changed","price":25}`)
	if status != http.StatusBadRequest {
		t.Fatalf("edit a reserved ticket: %d %s", status, body)
	}
	if st, b := s.do(t, "POST", "/api/orders", "other", `{"ticketId":"`+tk.ID+`"}`); st != http.StatusBadRequest {
		t.Fatalf("second order: %d %s", st, b)
	}

	if st, b := s.do(t, "DELETE", "/api/orders/"+o.ID, "buyer", ""); st != http.StatusNoContent {
		t.Fatalf("cancel: %d %s", st, b)
	}
	testenv.Eventually(t, 20*time.Second, "ticket released", func() bool {
		return getTicket(t, tickets, tk.ID).OrderID == ""
	})
	status, body = request(t, tickets, "PUT", "/api/tickets/"+tk.ID, "seller", `{"title":"changed","price":25}`)
	if status != http.StatusOK {
		t.Fatalf("edit after cancel: %d %s", status, body)
	}
	final := getTicket(t, tickets, tk.ID)

	// The orders replica follows the ticket to its last version (reserved,
	// released, edited: every ticket:updated applied in order).
	testenv.Eventually(t, 20*time.Second, "replica at the ticket's last version", func() bool {
		got, err := s.Store.Ticket(context.Background(), tk.ID)
		return err == nil && got.Version == final.Version && got.Title == "changed" && got.Price == 25
	})
	again := s.mustOrder(t, "other", tk.ID)
	if again.Ticket.Title != "changed" || again.Ticket.Version != final.Version {
		t.Fatalf("new order's ticket = %+v", again.Ticket)
	}
}
