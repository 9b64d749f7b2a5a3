package domain

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
)

func fieldsOf(err error) map[string]string {
	var e *apperr.Error
	if !errors.As(err, &e) {
		return nil
	}
	m := map[string]string{}
	for _, f := range e.Fields {
		m[f.Field] = f.Message
	}
	return m
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want map[string]string
	}{
		{"valid", Input{"concert", 10}, nil},
		{"small price", Input{"concert", 0.01}, nil},
		{"empty title", Input{"", 10}, map[string]string{"title": MsgTitleRequired}},
		{"blank title", Input{" \t\n", 10}, map[string]string{"title": MsgTitleRequired}},
		{"zero price", Input{"concert", 0}, map[string]string{"price": MsgPricePositive}},
		{"negative price", Input{"concert", -10}, map[string]string{"price": MsgPricePositive}},
		{"NaN price", Input{"concert", math.NaN()}, map[string]string{"price": MsgPricePositive}},
		{"Inf price", Input{"concert", math.Inf(1)}, map[string]string{"price": MsgPricePositive}},
		{"both", Input{"", -1}, map[string]string{"title": MsgTitleRequired, "price": MsgPricePositive}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("Validate() = %v, want Invalid", err)
			}
			got := fieldsOf(err)
			if len(got) != len(tt.want) {
				t.Fatalf("fields = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("field %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	tk, err := New("u1", Input{"concert", 20})
	if err != nil {
		t.Fatal(err)
	}
	if tk.Version != 0 || tk.UserID != "u1" || tk.Reserved() || tk.Title != "concert" || tk.Price != 20 {
		t.Fatalf("New = %+v", tk)
	}
	if _, err := New("", Input{"concert", 20}); !apperr.Is(err, apperr.Unauthorized) {
		t.Fatalf("New without user = %v, want Unauthorized", err)
	}
	if _, err := New("u1", Input{"", 20}); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("New invalid = %v, want Invalid", err)
	}
}

func TestEdit(t *testing.T) {
	tests := []struct {
		name    string
		ticket  Ticket
		user    string
		in      Input
		code    apperr.Code // "" = success
		message string
	}{
		{"owner edits", Ticket{UserID: "u1", Title: "a", Price: 1}, "u1", Input{"b", 2}, "", ""},
		{"not owner", Ticket{UserID: "u1", Title: "a", Price: 1}, "u2", Input{"b", 2}, apperr.Unauthorized, "Not authorized"},
		{"not owner of a reserved ticket", Ticket{UserID: "u1", OrderID: "o1"}, "u2", Input{"b", 2}, apperr.Unauthorized, "Not authorized"},
		{"owner, reserved", Ticket{UserID: "u1", OrderID: "o1"}, "u1", Input{"b", 2}, apperr.Invalid, MsgReserved},
		{"invalid input before ownership", Ticket{UserID: "u1"}, "u2", Input{"", 2}, apperr.Invalid, MsgTitleRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := tt.ticket
			before := tk
			err := tk.Edit(tt.user, tt.in)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Edit = %v", err)
				}
				if tk.Title != tt.in.Title || tk.Price != tt.in.Price {
					t.Fatalf("ticket = %+v, want edited", tk)
				}
				return
			}
			var e *apperr.Error
			if !errors.As(err, &e) || e.Code != tt.code || e.Message != tt.message {
				t.Fatalf("Edit = %v, want %s %q", err, tt.code, tt.message)
			}
			if tk.Title != before.Title || tk.Price != before.Price {
				t.Fatalf("refused edit changed the ticket: %+v", tk)
			}
		})
	}
}

func TestExpectVersion(t *testing.T) {
	tk := Ticket{Version: 3}
	if err := tk.ExpectVersion(3); err != nil {
		t.Fatal(err)
	}
	if err := tk.ExpectVersion(2); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("ExpectVersion(2) = %v, want Conflict", err)
	}
}

func TestReserveRelease(t *testing.T) {
	var tk Ticket
	steps := []struct {
		op      string // "reserve" or "release"
		order   string
		want    error
		wantOID string
	}{
		{"release", "A", ErrNotYetReserved, ""}, // cancellation before its creation: wait
		{"reserve", "A", nil, "A"},
		{"reserve", "A", ErrUnchanged, "A"}, // duplicate
		{"reserve", "B", ErrHeldByOther, "A"},
		{"release", "B", ErrNotYetReserved, "A"},
		{"release", "A", nil, ""},
		{"release", "A", ErrUnchanged, ""}, // duplicate
		{"reserve", "A", ErrUnchanged, ""}, // redelivered creation of a cancelled order
		{"reserve", "B", nil, "B"},
		{"release", "A", ErrUnchanged, "B"}, // stale cancellation must not free B's ticket
		{"release", "B", nil, ""},
	}
	for i, s := range steps {
		var err error
		if s.op == "reserve" {
			err = tk.Reserve(s.order)
		} else {
			err = tk.Release(s.order)
		}
		if !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("step %d %s(%s) = %v, want %v", i, s.op, s.order, err, s.want)
		}
		if tk.OrderID != s.wantOID {
			t.Fatalf("step %d %s(%s): orderId = %q, want %q", i, s.op, s.order, tk.OrderID, s.wantOID)
		}
	}
	if err := tk.Reserve(""); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("Reserve(\"\") = %v", err)
	}
}

func TestReleaseUnseen(t *testing.T) {
	var tk Ticket
	if err := tk.Reserve("B"); err != nil {
		t.Fatal(err)
	}
	// A's cancellation while B holds the ticket and A was never seen.
	if err := tk.ReleaseUnseen("A"); err != nil || tk.OrderID != "B" {
		t.Fatalf("ReleaseUnseen(A) = %v, orderId %q", err, tk.OrderID)
	}
	if err := tk.ReleaseUnseen("A"); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second ReleaseUnseen(A) = %v, want ErrUnchanged", err)
	}
	// A's late creation is stale, even once the ticket is free.
	if err := tk.Release("B"); err != nil {
		t.Fatal(err)
	}
	if err := tk.Reserve("A"); !errors.Is(err, ErrUnchanged) || tk.Reserved() {
		t.Fatalf("Reserve(A) after its cancellation = %v, orderId %q", err, tk.OrderID)
	}
	// An order holding the ticket by now is released as usual.
	if err := tk.Reserve("C"); err != nil {
		t.Fatal(err)
	}
	if err := tk.ReleaseUnseen("C"); err != nil || tk.Reserved() {
		t.Fatalf("ReleaseUnseen(C) of the holder = %v, orderId %q", err, tk.OrderID)
	}
}

func TestReleasedIsBounded(t *testing.T) {
	var tk Ticket
	for i := 0; i < MaxReleased+10; i++ {
		id := strings.Repeat("x", i+1)
		if err := tk.Reserve(id); err != nil {
			t.Fatal(err)
		}
		if err := tk.Release(id); err != nil {
			t.Fatal(err)
		}
	}
	if len(tk.Released) != MaxReleased {
		t.Fatalf("len(Released) = %d, want %d", len(tk.Released), MaxReleased)
	}
	if last := tk.Released[MaxReleased-1]; last != strings.Repeat("x", MaxReleased+10) {
		t.Fatalf("the newest release was dropped")
	}
}

// Once the ticket has forgotten released orders, the creation of an order
// older than the oldest one it remembers (by more than the clock slack) is
// stale: that order cannot hold the ticket any more. A younger unknown
// order, or an id that is no ObjectId, reserves as usual.
func TestCreationOlderThanTheRememberedReleasesIsStale(t *testing.T) {
	at := func(d time.Duration) string { // an ObjectId created at now+d
		b := make([]byte, 12)
		binary.BigEndian.PutUint32(b, uint32(time.Now().Add(d).Unix()))
		return hex.EncodeToString(b)
	}
	var tk Ticket
	for i := 0; i < MaxReleased; i++ {
		id := at(0)[:20] + fmt.Sprintf("%04x", i)
		if err := tk.Reserve(id); err != nil {
			t.Fatal(err)
		}
		if err := tk.Release(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := tk.Reserve(at(-time.Hour)); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("creation of an order an hour older than every remembered release: %v, want ErrUnchanged", err)
	}
	if err := tk.Reserve(at(-time.Second)); err != nil {
		t.Fatalf("creation of an order a second older (within the clock slack): %v, want it reserved", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tk.Release(tk.OrderID))
	if err := tk.Reserve("legacy-order-id"); err != nil {
		t.Fatalf("an id that is no ObjectId: %v, want it reserved", err)
	}
	// Not full yet: never judged by age.
	var fresh Ticket
	if err := fresh.Reserve(at(-time.Hour)); err != nil {
		t.Fatalf("old order on a ticket that forgot nothing: %v", err)
	}
}

func TestEvents(t *testing.T) {
	tk := Ticket{ID: "abc", Title: "t", Price: 5, UserID: "u", Version: 2, OrderID: "o"}
	c, u := tk.Created(), tk.Updated()
	if c.ID != "abc" || c.Version != 2 || c.OrderID != "o" || u.Price != 5 || u.UserID != "u" || u.Title != "t" {
		t.Fatalf("events = %+v %+v", c, u)
	}
}
