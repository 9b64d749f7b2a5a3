package main

import (
	"bytes"
	"context"
	"fmt"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// discover returns the services whose directory holds a main package;
// the others (not written yet) are skipped with a log line.
func discover(root string, all []Service, log *slog.Logger) ([]Service, error) {
	var out []Service
	for _, s := range all {
		ok, err := hasMain(filepath.Join(root, "services", s.Name))
		if err != nil {
			return nil, err
		}
		if !ok {
			log.Info("service skipped: no main package yet", "service", s.Name)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func hasMain(dir string) (bool, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return false, err
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly)
		if err != nil {
			return false, fmt.Errorf("%s: %w", f, err)
		}
		if af.Name.Name == "main" {
			return true, nil
		}
	}
	return false, nil
}

// build compiles the services with one go build (the toolchain builds them
// in parallel and shares their dependencies) into binDir, and returns the
// path of each binary.
func build(ctx context.Context, root, binDir string, svcs []Service, log *slog.Logger) (map[string]string, error) {
	bins := map[string]string{}
	if len(svcs) == 0 {
		return bins, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	// The same flags as the services' Dockerfile: a static binary (no
	// dynamic loader and libc mapped into each process, about 1 MB of RSS)
	// without symbol tables, so that what the dev stack and the benchmark
	// run is what the images ship.
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", binDir + string(filepath.Separator)}
	for _, s := range svcs {
		args = append(args, "./services/"+s.Name)
		bin := filepath.Join(binDir, s.Name)
		if runtime.GOOS == "windows" {
			bin += ".exe"
		}
		bins[s.Name] = bin
	}
	start := time.Now()
	log.Info("building services", "services", names(svcs), "into", binDir)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	log.Info("services built", "took", time.Since(start).Round(time.Millisecond))
	return bins, nil
}
