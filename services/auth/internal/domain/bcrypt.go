package domain

import (
	"errors"

	"golang.org/x/crypto/bcrypt"
)

// ErrMismatch is what a Hasher returns for a wrong password.
var ErrMismatch = errors.New("password mismatch")

// Bcrypt is the production Hasher.
type Bcrypt struct{ Cost int }

// Hash returns the bcrypt hash of password.
func (b Bcrypt) Hash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), b.Cost)
	return string(h), err
}

// Compare returns nil for a match and ErrMismatch for a wrong password.
func (b Bcrypt) Compare(hash, password string) error {
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return ErrMismatch
	}
	return err
}
