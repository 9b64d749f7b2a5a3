package apperr_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/ticketing-go/ticketing/common/apperr"
)

func TestStatus(t *testing.T) {
	cases := []struct {
		code apperr.Code
		want int
	}{
		{apperr.Invalid, http.StatusBadRequest},
		{apperr.Unauthorized, http.StatusUnauthorized},
		{apperr.NotFound, http.StatusNotFound},
		{apperr.Conflict, http.StatusConflict},
		{apperr.TooLarge, http.StatusRequestEntityTooLarge},
		{apperr.UnsupportedType, http.StatusUnsupportedMediaType},
		{apperr.TooManyRequests, http.StatusTooManyRequests},
		{apperr.PaymentFailed, http.StatusPaymentRequired},
		{apperr.Unavailable, http.StatusServiceUnavailable},
		{apperr.Internal, http.StatusInternalServerError},
		{apperr.Code("something-else"), http.StatusInternalServerError},
	}
	for _, c := range cases {
		if got := apperr.Status(c.code); got != c.want {
			t.Errorf("Status(%q) = %d, want %d", c.code, got, c.want)
		}
	}
}

func TestCodeOfSeesThroughWrapping(t *testing.T) {
	err := fmt.Errorf("saving: %w", apperr.ErrNotFound)
	if got := apperr.CodeOf(err); got != apperr.NotFound {
		t.Fatalf("CodeOf(wrapped not found) = %q", got)
	}
	if got := apperr.CodeOf(errors.New("boom")); got != apperr.Internal {
		t.Fatalf("CodeOf(plain error) = %q, want internal", got)
	}
	if apperr.Is(nil, apperr.Internal) {
		t.Fatal("Is(nil, Internal) must be false")
	}
	if !apperr.Is(apperr.ErrNotAuthorized, apperr.Unauthorized) {
		t.Fatal("ErrNotAuthorized is not Unauthorized")
	}
}

func TestFields(t *testing.T) {
	if err := apperr.Fields(); err != nil {
		t.Fatalf("Fields() = %v, want nil", err)
	}
	err := apperr.Fields(apperr.FieldError{Field: "title", Message: "Title is required"},
		apperr.FieldError{Field: "price", Message: "Price must be greater than 0"})
	var e *apperr.Error
	if !errors.As(err, &e) || e.Code != apperr.Invalid || len(e.Fields) != 2 || e.Message != "Title is required" {
		t.Fatalf("Fields(...) = %#v", err)
	}
	f := apperr.Field("price", "Price must be greater than 0")
	if f.Code != apperr.Invalid || f.Fields[0].Field != "price" {
		t.Fatalf("Field = %#v", f)
	}
}

func TestWrapKeepsCause(t *testing.T) {
	cause := errors.New("connection refused")
	err := apperr.Wrap(apperr.Unavailable, "The database is unavailable", cause)
	if !errors.Is(err, cause) {
		t.Fatal("Wrap lost its cause")
	}
	if got, want := err.Error(), "unavailable: The database is unavailable: connection refused"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got, want := apperr.Errorf(apperr.Conflict, "v%d", 3).Error(), "conflict: v3"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}
