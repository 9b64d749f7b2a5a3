package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/testcontainers/testcontainers-go"
)

var dockerClient lazy[*client.Client]

func docker(ctx context.Context) (*client.Client, error) {
	return dockerClient.get(func() (*client.Client, error) {
		c, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err != nil {
			return nil, err
		}
		return c.Client, nil
	})
}

func dockerPing(ctx context.Context) error {
	c, err := docker(ctx)
	if err != nil {
		return err
	}
	_, err = c.Ping(ctx)
	return err
}

// fixContainerHost points testcontainers at 127.0.0.1 when the Docker
// daemon shares this network namespace (its bridge gateway is a local
// address or in its subnet) but we run in a container ourselves: testcontainers would then
// use the default gateway, where the published ports are not reachable.
func fixContainerHost() {
	if _, ok := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := docker(ctx)
	if err != nil || !strings.HasPrefix(c.DaemonHost(), "unix://") {
		return
	}
	nw, err := c.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		return
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return
	}
	for _, cfg := range nw.IPAM.Config {
		_, subnet, err := net.ParseCIDR(cfg.Subnet)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (ipn.IP.String() == cfg.Gateway || subnet.Contains(ipn.IP)) {
				os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
				return
			}
		}
	}
}

func imageExists(ctx context.Context, c *client.Client, ref string) (bool, error) {
	_, err := c.ImageInspect(ctx, ref)
	if err == nil {
		return true, nil
	}
	if client.IsErrNotFound(err) {
		return false, nil
	}
	return false, err
}

// pullTimeout bounds an image pull: where no registry answers, the pull must
// fail fast so the stand-in image is used without a long wait.
const pullTimeout = 5 * time.Minute

// ensureImage makes ref available locally: present, or pulled. The pull is
// tried once (no retries); its error is returned when it fails.
func ensureImage(ctx context.Context, ref string) error {
	c, err := docker(ctx)
	if err != nil {
		return err
	}
	if ok, err := imageExists(ctx, c, ref); err != nil || ok {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	rc, err := c.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := readDockerStream(rc); err != nil {
		return err
	}
	if ok, err := imageExists(ctx, c, ref); err != nil || !ok {
		return fmt.Errorf("pull %s: image still missing (%v)", ref, err)
	}
	return nil
}

// readDockerStream drains a pull/build progress stream and returns the first
// error it reports.
func readDockerStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	var tail []string
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Stream != "" {
			tail = append(tail, strings.TrimSpace(m.Stream))
			if len(tail) > 10 {
				tail = tail[1:]
			}
		}
		if msg := m.ErrorDetail.Message + m.Error; msg != "" {
			return fmt.Errorf("%s (%s)", m.Error, strings.Join(tail, "; "))
		}
	}
}

// BuildGoImage returns tag, first building it if no image of that name
// exists: the Go main package goPkg is compiled with CGO_ENABLED=0 -trimpath
// for linux and put alone into a FROM scratch image as /<last element of
// goPkg>, its ENTRYPOINT. No CA certificates, no shell.
//
// goPkg is an import path or a ./relative package, built with `go build` in
// workDir (typically [RepoRoot], so the workspace's modules and versions
// apply), or path@version, built with `go install` outside the workspace
// (the module's own dependency versions; needs the module proxy or cache).
//
// The tag should change whenever the binary would (see [SourceHash]): an
// existing tag is reused as it is. Builds are serialised across processes
// with a file lock, so parallel test packages build an image once.
func BuildGoImage(ctx context.Context, tag, goPkg, workDir string) (string, error) {
	c, err := docker(ctx)
	if err != nil {
		return "", err
	}
	if ok, err := imageExists(ctx, c, tag); err != nil || ok {
		return tag, err
	}
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "ticketing-testenv-build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have built it while we waited for the lock.
	if ok, err := imageExists(ctx, c, tag); err != nil || ok {
		return tag, err
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "testenv-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	pkg, version, _ := strings.Cut(goPkg, "@")
	name := binaryName(pkg)
	if name == "." || name == "" {
		name = "app"
	}
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=-buildvcs=false")
	var cmd *exec.Cmd
	if version == "" {
		cmd = exec.CommandContext(ctx, goBinary(), "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), goPkg)
	} else {
		// pkg@version: built with the dependency versions of its own go.mod,
		// as upstream releases it, not those of the workspace.
		cmd = exec.CommandContext(ctx, goBinary(), "install", "-trimpath", "-ldflags=-s -w", goPkg)
		env = append(env, "GOWORK=off", "GOBIN="+dir)
	}
	cmd.Dir = workDir
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", goPkg, err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT [\"/%s\"]\n", name, name, name)
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {name, 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	res, err := c.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{LabelKey + ".image": "1"},
	})
	if err != nil {
		return "", fmt.Errorf("docker build %s: %w", tag, err)
	}
	defer res.Body.Close()
	if err := readDockerStream(res.Body); err != nil {
		return "", fmt.Errorf("docker build %s: %w", tag, err)
	}
	logf("built image %s from %s in %s", tag, goPkg, time.Since(start).Round(time.Millisecond))
	return tag, nil
}

// binaryName is the name go build and go install give the binary of pkg:
// its last element, or the one before a major version suffix
// (github.com/nats-io/nats-server/v2 -> nats-server).
func binaryName(pkg string) string {
	pkg = strings.TrimSuffix(pkg, "/")
	name := path.Base(pkg)
	if len(name) > 1 && name[0] == 'v' && strings.Trim(name[1:], "0123456789") == "" && path.Dir(pkg) != "." {
		name = path.Base(path.Dir(pkg))
	}
	return name
}

func goBinary() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// lockFile takes an exclusive flock on path (created if needed), waiting
// until ctx is done.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SourceHash returns the first 12 hex digits of a SHA-256 over the Go
// sources (*.go except tests, go.mod, go.sum, go.work) under the given
// directories or files (relative to root), with their paths: a tag that
// changes when they do.
func SourceHash(root string, dirs ...string) (string, error) {
	var files []string
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				if n := e.Name(); p != filepath.Join(root, d) && (strings.HasPrefix(n, ".") || n == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			n := e.Name()
			if (strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go")) || n == "go.mod" || n == "go.sum" || n == "go.work" {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

var repoRoot lazy[string]

// RepoRoot returns the directory of the go.work file that encloses the
// current directory (the monorepo root).
func RepoRoot() (string, error) {
	return repoRoot.get(func() (string, error) {
		dir, err := os.Getwd()
		if err != nil {
			return "", err
		}
		for d := dir; ; d = filepath.Dir(d) {
			if fileExists(filepath.Join(d, "go.work")) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				return "", fmt.Errorf("testenv: no go.work above %s", dir)
			}
		}
	})
}
