package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// StatusKB returns the kB values of the named fields (e.g. VmRSS, VmHWM)
// of a /proc/<pid>/status file.
func StatusKB(r io.Reader, fields ...string) (map[string]int64, error) {
	out := make(map[string]int64, len(fields))
	want := make(map[string]bool, len(fields))
	for _, f := range fields {
		want[f] = true
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || !want[name] {
			continue
		}
		parts := strings.Fields(rest)
		if len(parts) == 0 {
			continue
		}
		v, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = v
	}
	return out, sc.Err()
}

func procKB(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	m, err := StatusKB(f, "VmRSS", "VmHWM")
	return m["VmRSS"], m["VmHWM"], err
}

// Proc is a service process to watch.
type Proc struct {
	Name string
	PID  int
}

// ParseProcs parses "name=pid,name=pid".
func ParseProcs(s string) ([]Proc, error) {
	var ps []Proc
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, pid, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || name == "" || n <= 0 {
			return nil, fmt.Errorf("bad process %q: want name=pid", part)
		}
		ps = append(ps, Proc{name, n})
	}
	return ps, nil
}

// FindProcs lists the processes whose executable lies in dir (the
// devstack's built service binaries), named by the binary.
func FindProcs(dir string) ([]Proc, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var ps []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if filepath.Dir(exe) == abs {
			ps = append(ps, Proc{filepath.Base(exe), pid})
		}
	}
	return ps, nil
}

// EnvOf returns the value of name in the environment of process pid.
func EnvOf(pid int, name string) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return "", false
	}
	return LookupEnviron(b, name)
}

// LookupEnviron finds name in a NUL-separated environment block (the last
// assignment wins, as for exec).
func LookupEnviron(block []byte, name string) (string, bool) {
	val, found := "", false
	for _, kv := range strings.Split(string(block), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			val, found = v, true
		}
	}
	return val, found
}
