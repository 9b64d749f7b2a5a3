package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// StripeMockVersion is the release of github.com/stripe/stripe-mock (Stripe's
// official API mock, a Go module) that StripeMock runs.
const StripeMockVersion = "v0.203.0"

// StripeMock starts stripe-mock as a process on a free port for this test
// and returns its base URL (for STRIPE_API_BASE); the process is killed in
// Cleanup. The binary is built once per machine and version with `go
// install` and cached under os.TempDir().
//
// stripe-mock is stateless: it validates each request against Stripe's
// OpenAPI spec and answers a fixture, remembering nothing. Its bundled
// PaymentIntent fixture is in status requires_payment_method, which a real
// confirmed charge never returns with HTTP 200; StripeMock runs it with that
// fixture changed to a succeeded PaymentIntent, so a confirmed charge looks
// like one of real Stripe. Declines cannot be produced by stripe-mock: tests
// that need one answer it in a proxy of their own in front of this URL.
func StripeMock(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	files, err := stripeMockBuild.get(func() (stripeMockFiles, error) { return buildStripeMock(ctx) })
	if err != nil {
		tb.Fatalf("testenv: stripe-mock: %v", err)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("testenv: stripe-mock: %v", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(files.bin, "-http-addr", "127.0.0.1:"+strconv.Itoa(port),
		// stripe-mock also opens HTTPS on :12112 unless told otherwise; a
		// fixed port would clash between test processes running at once.
		"-https-addr", "127.0.0.1:0", "-fixtures", files.fixtures)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test process
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testenv: stripe-mock: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Any HTTP answer (401 without a key) means it is listening.
		res, err := http.Get(url + "/v1/balance")
		if err == nil {
			res.Body.Close()
			return url
		}
		select {
		case <-exited:
			tb.Fatalf("testenv: stripe-mock exited: %s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: stripe-mock did not listen on %s: %v", url, err)
		}
	}
}

type stripeMockFiles struct{ bin, fixtures string }

var stripeMockBuild lazy[stripeMockFiles]

// buildStripeMock installs the stripe-mock binary and writes the patched
// fixtures into a per-version cache directory, under a file lock so
// parallel test processes build it once.
func buildStripeMock(ctx context.Context) (stripeMockFiles, error) {
	dir := filepath.Join(os.TempDir(), "ticketing-testenv", "stripe-mock-"+StripeMockVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return stripeMockFiles{}, err
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return stripeMockFiles{}, err
	}
	defer unlock()
	files := stripeMockFiles{bin: filepath.Join(dir, "stripe-mock"), fixtures: filepath.Join(dir, "fixtures-succeeded.json")}
	if fileExists(files.bin) && fileExists(files.fixtures) {
		return files, nil
	}
	start := time.Now()
	mod := "github.com/stripe/stripe-mock@" + StripeMockVersion
	goCmd := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, goBinary(), args...)
		// Outside the workspace: stripe-mock builds with its own go.mod.
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		return cmd
	}
	if out, err := goCmd("install", mod).CombinedOutput(); err != nil {
		return stripeMockFiles{}, fmt.Errorf("go install %s: %v\n%s", mod, err, out)
	}
	out, err := goCmd("mod", "download", "-json", mod).Output()
	if err != nil {
		return stripeMockFiles{}, fmt.Errorf("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return stripeMockFiles{}, fmt.Errorf("go mod download %s: no module directory in %s", mod, out)
	}
	fixtures, err := succeededFixtures(filepath.Join(info.Dir, "embedded", "openapi", "fixtures3.json"))
	if err != nil {
		return stripeMockFiles{}, err
	}
	if err := os.WriteFile(files.fixtures+".tmp", fixtures, 0o644); err != nil {
		return stripeMockFiles{}, err
	}
	if err := os.Rename(files.fixtures+".tmp", files.fixtures); err != nil {
		return stripeMockFiles{}, err
	}
	logf("built stripe-mock %s in %s", StripeMockVersion, time.Since(start).Round(time.Millisecond))
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
