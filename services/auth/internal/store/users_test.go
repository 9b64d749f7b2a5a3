package store

import (
	"context"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/services/auth/internal/domain"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func MustOpenUsers(tb testing.TB) *Users {
	tb.Helper()
	u, err := NewUsers(tb.Context(), testenv.MongoDatabase(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func TestUsersCreateAndFind(t *testing.T) {
	ctx := t.Context()
	s := MustOpenUsers(t)
	u := &domain.User{Email: "Ann@Test.com", EmailKey: "ann@test.com", PasswordHash: "hash", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	if len(u.ID) != 24 {
		t.Fatalf("id %q, want an ObjectID hex", u.ID)
	}
	got, err := s.ByEmailKey(ctx, "ann@test.com")
	if err != nil {
		t.Fatal(err)
	}
	if *got != *u {
		t.Fatalf("read %+v, want %+v", got, u)
	}
	if _, err := s.ByEmailKey(ctx, "bob@test.com"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("unknown email: %v, want NotFound", err)
	}
	dup := &domain.User{Email: "ANN@test.com", EmailKey: "ann@test.com", PasswordHash: "other"}
	if err := s.Create(ctx, dup); err != domain.ErrEmailInUse {
		t.Fatalf("duplicate key: %v, want ErrEmailInUse", err)
	}
	// NewUsers is idempotent (every start of the service runs it).
	if _, err := NewUsers(ctx, s.coll.Database()); err != nil {
		t.Fatalf("second NewUsers: %v", err)
	}
}

// When MongoDB cannot be reached the store answers Unavailable (503, retry)
// rather than an internal error.
func TestUsersUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	db := testenv.UnreachableMongoDatabase(t, "auth")
	if _, err := NewUsers(ctx, db); !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("open (index): %v, want Unavailable", err)
	}
	s := &Users{coll: db.Collection(Collection)}
	if _, err := s.ByEmailKey(ctx, "a@b.co"); !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("find: %v, want Unavailable", err)
	}
	if err := s.Create(ctx, &domain.User{Email: "a@b.co", EmailKey: "a@b.co"}); !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("create: %v, want Unavailable", err)
	}
}
