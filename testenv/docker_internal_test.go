package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSourceHashFollowsSources(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hash := func() string {
		t.Helper()
		h, err := SourceHash(root, "mod", "go.work")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	write("mod/go.mod", "module x\n")
	write("mod/a.go", "package x\n")
	write("go.work", "go 1.26\n")
	h0 := hash()
	if len(h0) != 12 || hash() != h0 {
		t.Fatalf("hash %q: want 12 stable hex digits", h0)
	}
	for _, unchanged := range []string{"mod/a_test.go", "mod/README.md", "mod/.hidden/b.go", "other/c.go"} {
		write(unchanged, "package x // changed\n")
		if h := hash(); h != h0 {
			t.Errorf("writing %s changed the hash", unchanged)
		}
	}
	for _, changed := range []string{"mod/a.go", "mod/sub/b.go", "mod/go.sum", "go.work"} {
		write(changed, "package x // "+changed+"\n")
		h := hash()
		if h == h0 {
			t.Errorf("writing %s left the hash unchanged", changed)
		}
		h0 = h
	}
}

func TestLockFileIsExclusiveAcrossOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open conflicts even
	// within one process, as it would from another process.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if u, err := lockFile(ctx, path); err == nil {
		u()
		t.Fatal("second lock taken while the first is held")
	}
	unlock()
	u, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	u()
}

func TestBinaryNameDropsMajorVersion(t *testing.T) {
	for pkg, want := range map[string]string{
		"github.com/nats-io/nats-server/v2":        "nats-server",
		"github.com/nats-io/nats-streaming-server": "nats-streaming-server",
		"./services/tickets":                       "tickets",
		"./services/v2":                            "services",
		"example.com/vendor/version":               "version",
		"v2":                                       "v2",
	} {
		if got := binaryName(pkg); got != want {
			t.Errorf("binaryName(%q) = %q, want %q", pkg, got, want)
		}
	}
}
