package main

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

// StripeMockVersion is the release of github.com/stripe/stripe-mock
// (Stripe's official API mock, a Go module) the stack runs for payments
// when no STRIPE_KEY is set, so a purchase can be completed locally.
const StripeMockVersion = "v0.203.0"

// DevStripeKey is the key payments gets with stripe-mock, which accepts any
// test key.
const DevStripeKey = "sk_test_devstack"

// buildStripeMock installs stripe-mock into cacheDir (once per version) and
// writes its fixtures with the PaymentIntent made a succeeded one: the
// bundled fixture is in status requires_payment_method, which a real
// confirmed charge never returns.
func buildStripeMock(ctx context.Context, cacheDir string, log *slog.Logger) (bin, fixtures string, err error) {
	dir := filepath.Join(cacheDir, "stripe-mock-"+StripeMockVersion)
	bin, fixtures = filepath.Join(dir, "stripe-mock"), filepath.Join(dir, "fixtures-succeeded.json")
	if exists(bin) && exists(fixtures) {
		return bin, fixtures, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	start := time.Now()
	log.Info("building stripe-mock (once)", "version", StripeMockVersion, "into", dir)
	mod := "github.com/stripe/stripe-mock@" + StripeMockVersion
	goCmd := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "go", args...)
		// Outside the workspace: stripe-mock builds with its own go.mod.
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		return cmd
	}
	if out, err := goCmd("install", mod).CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		return "", "", fmt.Errorf("go install %s: %v\n%s", mod, err, out)
	}
	out, err := goCmd("mod", "download", "-json", mod).Output()
	if err != nil {
		return "", "", fmt.Errorf("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", "", fmt.Errorf("go mod download %s: no module directory in %s", mod, out)
	}
	patched, err := succeededFixtures(filepath.Join(info.Dir, "embedded", "openapi", "fixtures3.json"))
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(fixtures+".tmp", patched, 0o644); err != nil {
		return "", "", err
	}
	if err := os.Rename(fixtures+".tmp", fixtures); err != nil {
		return "", "", err
	}
	log.Info("stripe-mock built", "took", time.Since(start).Round(time.Millisecond))
	return bin, fixtures, nil
}

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
