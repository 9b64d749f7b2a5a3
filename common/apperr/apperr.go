// Package apperr is the one error type of ticketing: a small set of codes
// that every layer returns, mapped to an HTTP status in one place (Status,
// which httpx.WriteError uses), in the style of benbjohnson/wtf.
package apperr

import (
	"errors"
	"fmt"
	"net/http"
)

// Code says what kind of failure an Error is; it decides the HTTP status.
type Code string

const (
	Invalid         Code = "invalid"          // 400: bad input, or a rule of the domain refuses it
	Unauthorized    Code = "unauthorized"     // 401: no user, or not the owner (as the original app answers)
	NotFound        Code = "not_found"        // 404
	Conflict        Code = "conflict"         // 409: lost an optimistic-concurrency race
	TooLarge        Code = "too_large"        // 413
	UnsupportedType Code = "unsupported_type" // 415
	TooManyRequests Code = "too_many"         // 429
	PaymentFailed   Code = "payment_failed"   // 402
	Unavailable     Code = "unavailable"      // 503: a dependency (MongoDB, NATS) is down; retry later
	Internal        Code = "internal"         // 500: a bug or an unknown failure; the message is never shown
)

// FieldError is one problem with one input field.
type FieldError struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Error is an application error. Message is safe to show to a client for
// every code but Internal.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError // for Invalid: one entry per bad field
	Err     error        // the cause, for logs; never shown to a client
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a code and a client-facing message.
func New(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Errorf is New with formatting.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error that keeps err as its cause for the logs.
func Wrap(code Code, msg string, err error) *Error {
	return &Error{Code: code, Message: msg, Err: err}
}

// Fields returns an Invalid error listing every bad field; nil when there is none,
// so validators can `return apperr.Fields(errs...)` unconditionally.
func Fields(fields ...FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return &Error{Code: Invalid, Message: fields[0].Message, Fields: fields}
}

// Field is a single-field Invalid error.
func Field(field, msg string) *Error {
	return &Error{Code: Invalid, Message: msg, Fields: []FieldError{{Field: field, Message: msg}}}
}

// Common, pre-worded errors that several services answer.
var (
	ErrNotFound      = New(NotFound, "Not Found")
	ErrNotAuthorized = New(Unauthorized, "Not authorized")
)

// CodeOf returns the code of err, or Internal when err is not an *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries code.
func Is(err error, code Code) bool { return err != nil && CodeOf(err) == code }

// Status maps a code to its HTTP status: the only place where that mapping lives.
func Status(code Code) int {
	switch code {
	case Invalid:
		return http.StatusBadRequest
	case Unauthorized:
		return http.StatusUnauthorized
	case NotFound:
		return http.StatusNotFound
	case Conflict:
		return http.StatusConflict
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case UnsupportedType:
		return http.StatusUnsupportedMediaType
	case TooManyRequests:
		return http.StatusTooManyRequests
	case PaymentFailed:
		return http.StatusPaymentRequired
	case Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
