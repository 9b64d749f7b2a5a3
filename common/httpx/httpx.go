// Package httpx holds the HTTP helpers every service shares: JSON responses,
// the common error body {"errors":[{"message","field"}]}, and a strict JSON
// body decoder.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/ticketing-go/ticketing/common/apperr"
)

// DefaultMaxBody is the largest request body Decode accepts unless told otherwise.
const DefaultMaxBody = 1 << 20

// ErrorBody is the JSON every error response carries.
type ErrorBody struct {
	Errors []apperr.FieldError `json:"errors"`
}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v == nil || status == http.StatusNoContent {
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers err in the common format. Errors that are not an
// *apperr.Error, and Internal ones, are logged and answered with a generic
// 500 so no internal detail leaks to the client.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *apperr.Error
	if !errors.As(err, &e) || e.Code == apperr.Internal {
		if log == nil {
			log = slog.Default()
		}
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		WriteJSON(w, http.StatusInternalServerError, ErrorBody{Errors: []apperr.FieldError{{Message: "Something went wrong"}}})
		return
	}
	if e.Code == apperr.Unavailable {
		w.Header().Set("Retry-After", "1")
	}
	body := ErrorBody{Errors: e.Fields}
	if len(body.Errors) == 0 {
		body.Errors = []apperr.FieldError{{Message: e.Message}}
	}
	WriteJSON(w, apperr.Status(e.Code), body)
}

// Decode reads a JSON request body into dst. It answers with apperr errors:
// UnsupportedType (415) unless the content type is JSON, TooLarge (413) above
// maxBytes (DefaultMaxBody when 0), Invalid (400) for malformed JSON, a value
// of the wrong type (naming the field), or trailing data.
func Decode(r *http.Request, dst any, maxBytes int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
			return apperr.New(apperr.UnsupportedType, "Content-Type must be application/json")
		}
	} else if r.ContentLength != 0 {
		// The original app (express.json) only parses JSON bodies; a body
		// without a type is refused rather than guessed at.
		return apperr.New(apperr.UnsupportedType, "Content-Type must be application/json")
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBody
	}
	body := http.MaxBytesReader(nil, r.Body, maxBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil {
			if e := decodeError(err); apperr.Is(e, apperr.TooLarge) {
				return e
			}
		}
		return apperr.New(apperr.Invalid, "Request body must be a single JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		tooLarge  *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLarge):
		return apperr.Errorf(apperr.TooLarge, "Request body must not exceed %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return apperr.New(apperr.Invalid, "Request body must not be empty")
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return apperr.Field(typeErr.Field, fmt.Sprintf("%s has the wrong type (want %s)", typeErr.Field, typeErr.Type))
	case errors.As(err, &typeErr):
		return apperr.New(apperr.Invalid, "Request body must be a JSON object")
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.New(apperr.Invalid, "Request body is not valid JSON")
	default:
		return apperr.Wrap(apperr.Invalid, "Request body could not be read", err)
	}
}
