package testenv

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/testenv/stripemock"
)

// StripeMockVersion is the release of github.com/stripe/stripe-mock (Stripe's
// official API mock, a Go module) that StripeMock runs.
const StripeMockVersion = stripemock.Version

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
	files, err := stripeMockBuild.get(func() (stripemock.Files, error) { return buildStripeMock(ctx) })
	if err != nil {
		tb.Fatalf("testenv: stripe-mock: %v", err)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("testenv: stripe-mock: %v", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(files.Bin, "-http-addr", "127.0.0.1:"+strconv.Itoa(port),
		// stripe-mock also opens HTTPS on :12112 unless told otherwise; a
		// fixed port would clash between test processes running at once.
		"-https-addr", "127.0.0.1:0", "-fixtures", files.Fixtures)
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

var stripeMockBuild lazy[stripemock.Files]

// buildStripeMock builds stripe-mock into the per-machine cache under a
// file lock, so parallel test processes build it once.
func buildStripeMock(ctx context.Context) (stripemock.Files, error) {
	dir := filepath.Join(os.TempDir(), "ticketing-testenv")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return stripemock.Files{}, err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "stripe-mock-"+StripeMockVersion+".lock"))
	if err != nil {
		return stripemock.Files{}, err
	}
	defer unlock()
	return stripemock.Build(ctx, dir, goBinary(), slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "testenv"))
}
