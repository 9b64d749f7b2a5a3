// Package config reads a service's configuration from the environment:
// defaults where a safe one exists, every problem reported at once at start,
// and a log line with secrets masked.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env collects values and the problems met reading them.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
	seen   []entry
}

type entry struct {
	name, value string
	secret      bool
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{lookup: os.LookupEnv} }

// FromMap reads m (for tests and for the local stack).
func FromMap(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func (e *Env) raw(name string) (string, bool) {
	v, ok := e.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (e *Env) record(name, value string, secret bool) {
	e.seen = append(e.seen, entry{name, value, secret})
}

// String returns the variable or def.
func (e *Env) String(name, def string) string {
	v, ok := e.raw(name)
	if !ok {
		v = def
	}
	e.record(name, v, false)
	return v
}

// Required returns the variable, recording a problem when it is unset.
func (e *Env) Required(name string) string {
	v, ok := e.raw(name)
	if !ok {
		e.errs = append(e.errs, fmt.Errorf("%s is required", name))
	}
	e.record(name, v, false)
	return v
}

// Secret is Required for a value that must never be logged.
func (e *Env) Secret(name string) string {
	v, ok := e.raw(name)
	if !ok {
		e.errs = append(e.errs, fmt.Errorf("%s is required", name))
	}
	e.record(name, v, true)
	return v
}

// Duration parses a Go duration ("15m", "2s") or returns def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.raw(name)
	if !ok {
		e.record(name, def.String(), false)
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a positive duration", name, v))
	}
	e.record(name, v, false)
	return d
}

// Int parses an integer or returns def.
func (e *Env) Int(name string, def int) int {
	v, ok := e.raw(name)
	if !ok {
		e.record(name, strconv.Itoa(def), false)
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not an integer", name, v))
	}
	e.record(name, v, false)
	return n
}

// Bool parses true/false/1/0 or returns def.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.raw(name)
	if !ok {
		e.record(name, strconv.FormatBool(def), false)
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a boolean", name, v))
	}
	e.record(name, v, false)
	return b
}

// Check adds a problem when ok is false.
func (e *Env) Check(ok bool, format string, args ...any) {
	if !ok {
		e.errs = append(e.errs, fmt.Errorf(format, args...))
	}
}

// Err returns every problem met, joined, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Log writes the configuration read so far as one line, secrets masked.
func (e *Env) Log(log *slog.Logger, msg string) {
	attrs := make([]any, 0, len(e.seen))
	for _, s := range e.seen {
		v := s.value
		if s.secret && v != "" {
			v = "***"
		}
		attrs = append(attrs, slog.String(s.name, MaskURL(v)))
	}
	log.Info(msg, attrs...)
}

// MaskURL hides a password in a URL-shaped value (mongodb://user:pass@host).
func MaskURL(v string) string {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	// The userinfo ends at the last '@' before the query: an '@' in the
	// query is not a separator, while a password may hold an unencoded '/'.
	authority := rest
	if end := strings.IndexAny(rest, "?#"); end >= 0 {
		authority = rest[:end]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return v
	}
	userinfo := rest[:at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return scheme + "://" + user + ":***@" + rest[at+1:]
	}
	return v
}
