// Package domain holds the rules of the auth service: what a valid email and
// password are, how passwords are hashed and checked, and the sign-up and
// sign-in use cases. It knows nothing of HTTP or MongoDB; the store and the
// HTTP port adapt to the interfaces declared here.
package domain

import (
	"context"
	"errors"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ticketing-go/ticketing/common/apperr"
)

// User is a registered user. Email is kept as the user typed it (trimmed);
// EmailKey, its lower-case form, is what identifies the user.
type User struct {
	ID           string
	Email        string
	EmailKey     string
	PasswordHash string
	CreatedAt    time.Time
}

// Messages of the API, worded as in the original app.
const (
	MsgEmailInvalid       = "Email must be valid"
	MsgPasswordLength     = "Password must be between 4 and 20 characters"
	MsgPasswordRequired   = "You must supply a password"
	MsgPasswordTooLong    = "Password must not exceed 72 bytes"
	MsgEmailInUse         = "Email in use"
	MsgInvalidCredentials = "Invalid credentials"
)

var (
	// ErrEmailInUse is returned by a Users store when the unique index on the
	// email key refuses a second user with the same email.
	ErrEmailInUse = apperr.New(apperr.Invalid, MsgEmailInUse)
	// ErrInvalidCredentials is the one answer to an unknown email and to a
	// wrong password alike, so the API does not reveal which emails exist.
	ErrInvalidCredentials = apperr.New(apperr.Invalid, MsgInvalidCredentials)
)

// maxPasswordBytes is bcrypt's input limit; longer passwords would be
// refused by bcrypt (or silently truncated by other implementations).
const maxPasswordBytes = 72

// NormalizeEmail returns the email as stored (trimmed) and its key (lower case).
func NormalizeEmail(email string) (display, key string) {
	display = strings.TrimSpace(email)
	return display, strings.ToLower(display)
}

// ValidEmail reports whether s (already trimmed) is a plain address
// local@domain.tld, without display name or comments.
func ValidEmail(s string) bool {
	if s == "" || len(s) > 254 {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	local, host := s[:at], s[at+1:]
	if local == "" || len(local) > 64 || strings.ContainsAny(s, " \t\r\n\"") {
		return false
	}
	// A domain needs a dot and non-empty labels ("a@b" and "a@b..c" are refused,
	// as express-validator's isEmail refuses them).
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return false
		}
	}
	return true
}

// SignupInput is a sign-up request as received.
type SignupInput struct{ Email, Password string }

// Validate trims the fields and reports every bad one at once.
func (in *SignupInput) Validate() error {
	in.Email = strings.TrimSpace(in.Email)
	in.Password = strings.TrimSpace(in.Password)
	var fe []apperr.FieldError
	if !ValidEmail(in.Email) {
		fe = append(fe, apperr.FieldError{Field: "email", Message: MsgEmailInvalid})
	}
	switch n := utf8.RuneCountInString(in.Password); {
	case n < 4 || n > 20:
		fe = append(fe, apperr.FieldError{Field: "password", Message: MsgPasswordLength})
	case len(in.Password) > maxPasswordBytes:
		fe = append(fe, apperr.FieldError{Field: "password", Message: MsgPasswordTooLong})
	}
	return apperr.Fields(fe...)
}

// SigninInput is a sign-in request as received.
type SigninInput struct{ Email, Password string }

// Validate trims the fields and reports every bad one at once.
func (in *SigninInput) Validate() error {
	in.Email = strings.TrimSpace(in.Email)
	in.Password = strings.TrimSpace(in.Password)
	var fe []apperr.FieldError
	if !ValidEmail(in.Email) {
		fe = append(fe, apperr.FieldError{Field: "email", Message: MsgEmailInvalid})
	}
	if in.Password == "" {
		fe = append(fe, apperr.FieldError{Field: "password", Message: MsgPasswordRequired})
	}
	return apperr.Fields(fe...)
}

// Users stores users. Create must fail with ErrEmailInUse when a user with
// the same EmailKey exists (decided by a unique index, so concurrent sign-ups
// cannot both succeed); ByEmailKey returns apperr.ErrNotFound for no user.
type Users interface {
	Create(ctx context.Context, u *User) error
	ByEmailKey(ctx context.Context, key string) (*User, error)
}

// Hasher hashes and checks passwords (bcrypt in production).
type Hasher interface {
	Hash(password string) (string, error)
	// Compare returns nil when password matches hash.
	Compare(hash, password string) error
}

// Service is the sign-up and sign-in use cases.
type Service struct {
	users  Users
	hasher Hasher
	now    func() time.Time
	// dummyHash is compared against when the email is unknown, so that an
	// unknown email costs the same bcrypt work as a wrong password.
	dummyHash string
}

// NewService returns a Service; it hashes a dummy password once so that
// sign-in for an unknown email takes as long as for a known one.
func NewService(users Users, hasher Hasher) (*Service, error) {
	dummy, err := hasher.Hash("dummy-password-for-timing")
	if err != nil {
		return nil, err
	}
	return &Service{users: users, hasher: hasher, now: time.Now, dummyHash: dummy}, nil
}

// Signup validates in, hashes the password and creates the user.
func (s *Service) Signup(ctx context.Context, in SignupInput) (*User, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	hash, err := s.hasher.Hash(in.Password)
	if err != nil {
		return nil, err
	}
	display, key := NormalizeEmail(in.Email)
	u := &User{Email: display, EmailKey: key, PasswordHash: hash, CreatedAt: s.now().UTC()}
	if err := s.users.Create(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// Signin validates in and checks the credentials. An unknown email and a
// wrong password both give ErrInvalidCredentials after one hash comparison.
func (s *Service) Signin(ctx context.Context, in SigninInput) (*User, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	_, key := NormalizeEmail(in.Email)
	u, err := s.users.ByEmailKey(ctx, key)
	switch {
	case apperr.Is(err, apperr.NotFound):
		_ = s.hasher.Compare(s.dummyHash, in.Password)
		return nil, ErrInvalidCredentials
	case err != nil:
		return nil, err
	}
	if err := s.hasher.Compare(u.PasswordHash, in.Password); err != nil {
		if errors.Is(err, ErrMismatch) {
			return nil, ErrInvalidCredentials
		}
		return nil, err
	}
	return u, nil
}
