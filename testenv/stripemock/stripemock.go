// Package stripemock builds stripe-mock (Stripe's official API mock, a Go
// module) with fixtures in which a confirmed PaymentIntent has succeeded.
// It is shared by the tests (testenv.StripeMock) and the local stack
// (devstack), so it has no testing import and no platform-specific code.
package stripemock

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Version is the release of github.com/stripe/stripe-mock that is built.
const Version = "v0.203.0"

// Files are a built stripe-mock: run Bin with -fixtures Fixtures.
type Files struct{ Bin, Fixtures string }

// Build installs stripe-mock Version into cacheDir/stripe-mock-<Version>
// with the go command goCmd ("go": the one on PATH) and writes its fixtures
// there, unless both are there already. It does not lock: callers that may
// build concurrently (parallel test processes) serialise Build themselves.
// log may be nil.
//
// stripe-mock's bundled PaymentIntent fixture is in status
// requires_payment_method, which a real confirmed charge never returns with
// HTTP 200; the fixtures written here make it a succeeded PaymentIntent.
func Build(ctx context.Context, cacheDir, goCmd string, log *slog.Logger) (Files, error) {
	dir := filepath.Join(cacheDir, "stripe-mock-"+Version)
	files := Files{Bin: filepath.Join(dir, "stripe-mock"), Fixtures: filepath.Join(dir, "fixtures-succeeded.json")}
	if exists(files.Bin) && exists(files.Fixtures) {
		return files, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	log.Info("building stripe-mock (once)", "version", Version, "into", dir)
	mod := "github.com/stripe/stripe-mock@" + Version
	run := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, goCmd, args...)
		// Outside the workspace: stripe-mock builds with its own go.mod.
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		return cmd
	}
	if out, err := run("install", mod).CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return Files{}, ctx.Err()
		}
		return Files{}, fmt.Errorf("go install %s: %v\n%s", mod, err, out)
	}
	out, err := run("mod", "download", "-json", mod).Output()
	if err != nil {
		return Files{}, fmt.Errorf("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return Files{}, fmt.Errorf("go mod download %s: no module directory in %s", mod, out)
	}
	fixtures, err := succeededFixtures(filepath.Join(info.Dir, "embedded", "openapi", "fixtures3.json"))
	if err != nil {
		return Files{}, err
	}
	// Written aside and renamed: a reader never sees half a file.
	if err := os.WriteFile(files.Fixtures+".tmp", fixtures, 0o644); err != nil {
		return Files{}, err
	}
	if err := os.Rename(files.Fixtures+".tmp", files.Fixtures); err != nil {
		return Files{}, err
	}
	log.Info("stripe-mock built", "version", Version, "took", time.Since(start).Round(time.Millisecond))
	return files, nil
}

// succeededFixtures returns stripe-mock's fixtures with the PaymentIntent
// turned into a succeeded one.
func succeededFixtures(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stripe-mock fixtures: %w", err)
	}
	var doc map[string]map[string]map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("stripe-mock fixtures %s: %w", path, err)
	}
	pi := doc["resources"]["payment_intent"]
	if pi == nil {
		return nil, fmt.Errorf("stripe-mock fixtures %s: no payment_intent resource", path)
	}
	pi["status"] = "succeeded"
	pi["last_payment_error"] = nil
	pi["next_action"] = nil
	pi["canceled_at"] = nil
	pi["cancellation_reason"] = nil
	return json.Marshal(doc)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
