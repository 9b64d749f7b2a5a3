package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Modes returned by [Mode].
const (
	ModeContainers = "containers"
	ModeEmbedded   = "embedded"
)

// LabelKey is set to "1" on every container testenv starts (see [Labels]).
const LabelKey = "ticketing.testenv"

func init() {
	// Before any testcontainers call: its configuration is read once, lazily.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
}

var (
	modeOnce sync.Once
	mode     string
	modeErr  error

	// closers run at the end of Main, last registered first.
	closersMu sync.Mutex
	closers   []func()
)

// Mode reports the mode of this process: "containers" when a Docker engine
// answers, "embedded" otherwise; TESTENV_MODE=containers|embedded forces one.
// The choice is printed to stderr once per process.
func Mode() string {
	m, _ := resolveMode()
	return m
}

func resolveMode() (string, error) {
	modeOnce.Do(func() {
		switch v := os.Getenv("TESTENV_MODE"); v {
		case ModeEmbedded:
			mode = ModeEmbedded
		case ModeContainers:
			mode = ModeContainers
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := dockerPing(ctx); err != nil {
				modeErr = fmt.Errorf("testenv: TESTENV_MODE=containers but the Docker engine does not answer: %w", err)
			}
		case "":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := dockerPing(ctx); err != nil {
				mode = ModeEmbedded
			} else {
				mode = ModeContainers
			}
		default:
			mode = ModeEmbedded
			modeErr = fmt.Errorf("testenv: TESTENV_MODE=%q: want %q or %q", v, ModeContainers, ModeEmbedded)
		}
		if mode == "" {
			mode = ModeContainers
		}
		if mode == ModeContainers && modeErr == nil {
			fixContainerHost()
			reapOrphans()
		}
		logf("mode %s", mode)
	})
	return mode, modeErr
}

// Main runs the tests of a package and then removes the servers and
// containers this process started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops every shared server and container of this process. Main
// calls it; call it yourself only when you cannot use Main.
func Shutdown() {
	closersMu.Lock()
	cs := closers
	closers = nil
	closersMu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func atExit(f func()) {
	closersMu.Lock()
	closers = append(closers, f)
	closersMu.Unlock()
}

var logMu sync.Mutex

// logf prints a testenv line on stderr (go test shows it with -v or on failure).
func logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
}

var nameChars = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// uniqueName turns a test name into a short identifier ([A-Za-z0-9_]) with a
// random suffix, usable as database name or subject prefix.
func uniqueName(tb testing.TB, max int) string {
	n := nameChars.ReplaceAllString(tb.Name(), "_")
	n = strings.Trim(n, "_")
	suffix := randomHex(4)
	if limit := max - len(suffix) - 1; len(n) > limit {
		n = n[:limit]
	}
	return n + "_" + suffix
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// lazy is a once-per-process value whose failure is reported to every caller.
type lazy[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (l *lazy[T]) get(f func() (T, error)) (T, error) {
	l.once.Do(func() { l.v, l.err = f() })
	return l.v, l.err
}
