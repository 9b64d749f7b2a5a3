// Package logx builds a service's *slog.Logger from the environment: JSON
// lines in the cluster (where a log collector parses them), readable text on
// a developer's terminal. Attributes stored in a context with WithAttrs (the
// request id, put there by httpx) are added to every record logged with that
// context, so a request's log lines can be found together.
package logx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Environment variables read by New.
const (
	EnvFormat = "LOG_FORMAT" // "json" or "text"; default json when KUBERNETES_SERVICE_HOST is set, else text
	EnvLevel  = "LOG_LEVEL"  // "debug", "info" (default), "warn" or "error"
)

// New returns the logger of service configured from the process
// environment, writing to stdout. An invalid LOG_FORMAT or LOG_LEVEL falls
// back to the default and is reported by a warning on the logger itself, so
// a typo in a manifest never stops a service from starting.
func New(service string) *slog.Logger {
	log, err := NewWith(os.LookupEnv, os.Stdout, service)
	if err != nil {
		log.Warn("logging configuration ignored", "err", err)
	}
	return log
}

// NewWith is New with an explicit environment lookup and output. It always
// returns a usable logger; err describes the settings it had to ignore.
func NewWith(lookup func(string) (string, bool), w io.Writer, service string) (*slog.Logger, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []string

	level := slog.LevelInfo
	if v := get(EnvLevel); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			level = slog.LevelInfo
			errs = append(errs, fmt.Sprintf("%s: %q is not one of debug, info, warn, error", EnvLevel, v))
		}
	}

	format := "text"
	if get("KUBERNETES_SERVICE_HOST") != "" {
		format = "json"
	}
	switch v := strings.ToLower(get(EnvFormat)); v {
	case "":
	case "json", "text":
		format = v
	default:
		errs = append(errs, fmt.Sprintf("%s: %q is not json or text", EnvFormat, v))
	}

	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	log := slog.New(contextHandler{h})
	if service != "" {
		log = log.With("service", service)
	}
	if len(errs) > 0 {
		return log, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return log, nil
}

type ctxKey struct{}

// WithAttrs returns a context whose log records (logged with the
// *Context methods of a logx logger) carry attrs in addition to those
// already stored in ctx.
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	all = append(append(all, prev...), attrs...)
	return context.WithValue(ctx, ctxKey{}, all)
}

// Attrs returns the attributes stored in ctx by WithAttrs.
func Attrs(ctx context.Context) []slog.Attr {
	a, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	return a
}

// Handler wraps h so that records carry the attributes stored in their
// context; use it to get that behaviour on a handler built elsewhere.
func Handler(h slog.Handler) slog.Handler {
	if _, ok := h.(contextHandler); ok {
		return h
	}
	return contextHandler{h}
}

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if a := Attrs(ctx); len(a) > 0 {
			r = r.Clone()
			r.AddAttrs(a...)
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
