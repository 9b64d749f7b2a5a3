package domain

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ticketing-go/ticketing/common/apperr"
)

func TestValidEmail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"test@test.com", true},
		{"First.Last+tag@sub.example.org", true},
		{"", false},
		{"test", false},
		{"test@", false},
		{"@test.com", false},
		{"test@test", false},
		{"test@test..com", false},
		{"test@.test.com", false},
		{"test@-test.com", false},
		{"a b@test.com", false},
		{"Name <test@test.com>", false},
		{"test@test.com (comment)", false},
		{strings.Repeat("a", 65) + "@test.com", false},
	} {
		if got := ValidEmail(tc.in); got != tc.want {
			t.Errorf("ValidEmail(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

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

func TestSignupValidate(t *testing.T) {
	for _, tc := range []struct {
		name, email, password string
		want                  map[string]string
	}{
		{"valid", "test@test.com", "password", nil},
		{"trimmed", "  test@test.com ", "  pass  ", nil},
		{"bad email", "nope", "password", map[string]string{"email": MsgEmailInvalid}},
		{"short password after trim", "test@test.com", "  abc  ", map[string]string{"password": MsgPasswordLength}},
		{"long password", "test@test.com", strings.Repeat("x", 21), map[string]string{"password": MsgPasswordLength}},
		{"20 characters is fine", "test@test.com", strings.Repeat("é", 20), nil},
		{"over bcrypt's 72 bytes", "test@test.com", strings.Repeat("😀", 19), map[string]string{"password": MsgPasswordTooLong}},
		{"both bad", "", "", map[string]string{"email": MsgEmailInvalid, "password": MsgPasswordLength}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := SignupInput{Email: tc.email, Password: tc.password}
			err := in.Validate()
			got := fieldsOf(err)
			if len(got) != len(tc.want) {
				t.Fatalf("fields %v, want %v (err %v)", got, tc.want, err)
			}
			for f, m := range tc.want {
				if got[f] != m {
					t.Errorf("field %s: %q, want %q", f, got[f], m)
				}
			}
			if tc.want == nil && (in.Email != strings.TrimSpace(tc.email) || in.Password != strings.TrimSpace(tc.password)) {
				t.Errorf("not trimmed: %q %q", in.Email, in.Password)
			}
		})
	}
}

func TestSigninValidate(t *testing.T) {
	in := SigninInput{Email: "bad", Password: "   "}
	got := fieldsOf(in.Validate())
	if got["email"] != MsgEmailInvalid || got["password"] != MsgPasswordRequired || len(got) != 2 {
		t.Fatalf("fields %v", got)
	}
	in = SigninInput{Email: "a@b.co", Password: "x"}
	if err := in.Validate(); err != nil {
		t.Fatalf("a one-character password must reach the credential check: %v", err)
	}
}

// memUsers is an in-memory Users for the use-case tests (the real store is
// tested against MongoDB in package store and httpapi).
type memUsers struct {
	mu    sync.Mutex
	byKey map[string]*User
}

func (m *memUsers) Create(_ context.Context, u *User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byKey[u.EmailKey]; ok {
		return ErrEmailInUse
	}
	u.ID = "id-" + u.EmailKey
	c := *u
	m.byKey[u.EmailKey] = &c
	return nil
}

func (m *memUsers) ByEmailKey(_ context.Context, key string) (*User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.byKey[key]; ok {
		c := *u
		return &c, nil
	}
	return nil, apperr.ErrNotFound
}

// countingHasher records the comparisons made, so the test can check that an
// unknown email costs a hash comparison just like a wrong password.
type countingHasher struct {
	mu       sync.Mutex
	compared []string // hashes compared against
}

func (h *countingHasher) Hash(pw string) (string, error) { return "h:" + pw, nil }
func (h *countingHasher) Compare(hash, pw string) error {
	h.mu.Lock()
	h.compared = append(h.compared, hash)
	h.mu.Unlock()
	if hash != "h:"+pw {
		return ErrMismatch
	}
	return nil
}

func TestSigninUnknownEmailAndWrongPasswordCostTheSame(t *testing.T) {
	ctx := context.Background()
	h := &countingHasher{}
	svc, err := NewService(&memUsers{byKey: map[string]*User{}}, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Signup(ctx, SignupInput{Email: "Known@Test.com", Password: "secret"}); err != nil {
		t.Fatal(err)
	}

	h.compared = nil
	_, errUnknown := svc.Signin(ctx, SigninInput{Email: "unknown@test.com", Password: "secret"})
	unknownCompares := len(h.compared)
	h.compared = nil
	_, errWrong := svc.Signin(ctx, SigninInput{Email: "known@test.com", Password: "wrong"})
	wrongCompares := len(h.compared)

	if errUnknown != ErrInvalidCredentials || errWrong != ErrInvalidCredentials {
		t.Fatalf("unknown email: %v; wrong password: %v; want both %v", errUnknown, errWrong, ErrInvalidCredentials)
	}
	if unknownCompares != 1 || wrongCompares != 1 {
		t.Fatalf("hash comparisons: unknown email %d, wrong password %d; want 1 and 1", unknownCompares, wrongCompares)
	}

	u, err := svc.Signin(ctx, SigninInput{Email: " KNOWN@test.com ", Password: " secret "})
	if err != nil {
		t.Fatalf("sign-in with other case and spaces: %v", err)
	}
	if u.Email != "Known@Test.com" {
		t.Errorf("email %q, want it as signed up", u.Email)
	}
}

func TestSignupDuplicateCaseInsensitive(t *testing.T) {
	ctx := context.Background()
	svc, err := NewService(&memUsers{byKey: map[string]*User{}}, &countingHasher{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Signup(ctx, SignupInput{Email: "a@test.com", Password: "secret"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Signup(ctx, SignupInput{Email: "A@TEST.COM", Password: "secret"}); err != ErrEmailInUse {
		t.Fatalf("second sign-up: %v, want %v", err, ErrEmailInUse)
	}
}

func TestBcrypt(t *testing.T) {
	b := Bcrypt{Cost: 4}
	h, err := b.Hash("secret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "secret") {
		t.Fatal("hash contains the password")
	}
	if err := b.Compare(h, "secret"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := b.Compare(h, "Secret"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v, want ErrMismatch", err)
	}
}
