package testenv

import (
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/auth"
)

// Eventually polls cond every 10 ms until it holds, and fails tb (naming
// what it waited for) if it does not within the given time.
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Token returns a session JWT for userID (email userID@test.io), signed
// with key and valid for an hour: what the auth service issues, for tests
// of the services that verify it.
func Token(tb testing.TB, key []byte, userID string) string {
	tb.Helper()
	tok, err := auth.Sign(key, auth.User{ID: userID, Email: userID + "@test.io"}, time.Hour, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}
