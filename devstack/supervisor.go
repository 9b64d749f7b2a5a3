package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// supervisor runs the services as child processes. It restarts nothing: a
// child that exits before the stack stops is reported on exited, and Run
// stops the whole stack, so a crash is never hidden by a silent restart.
type supervisor struct {
	out      io.Writer
	outMu    sync.Mutex // one line at a time from all children
	log      *slog.Logger
	children []*child
	exited   chan childExit
	stopping atomic.Bool
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // of Wait; read after done is closed
}

type childExit struct {
	name string
	err  error
}

func newSupervisor(out io.Writer, log *slog.Logger) *supervisor {
	return &supervisor{out: out, log: log, exited: make(chan childExit, len(DefaultServices)+8)}
}

func (s *supervisor) start(name, dir string, env []string, bin string, args ...string) error {
	pw := &prefixWriter{mu: &s.outMu, out: s.out, prefix: []byte(fmt.Sprintf("%-10s | ", name))}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = pw, pw // the same writer: exec calls it from one goroutine
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	s.children = append(s.children, c)
	go func() {
		c.err = cmd.Wait()
		pw.flush()
		close(c.done)
		if !s.stopping.Load() {
			s.exited <- childExit{name: name, err: exitErr(c.err)}
		}
	}()
	return nil
}

func exitErr(err error) error {
	if err == nil {
		return fmt.Errorf("exit status 0")
	}
	return err
}

func (s *supervisor) pid(name string) int {
	for _, c := range s.children {
		if c.name == name {
			return c.cmd.Process.Pid
		}
	}
	return 0
}

func (s *supervisor) running(name string) bool {
	for _, c := range s.children {
		if c.name == name {
			select {
			case <-c.done:
				return false
			default:
				return true
			}
		}
	}
	return false
}

// stopAll sends SIGTERM to every child still running, waits up to grace for
// them to shut down gracefully, then kills the rest.
func (s *supervisor) stopAll(grace time.Duration) {
	s.stopping.Store(true)
	for _, c := range s.children {
		select {
		case <-c.done:
		default:
			if err := terminate(c.cmd.Process); err != nil {
				s.log.Warn("signal service", "service", c.name, "err", err)
			}
		}
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for _, c := range s.children {
		select {
		case <-c.done:
		case <-deadline.C:
			// Fired once: from here on, every child still running is killed.
			s.log.Warn("service did not stop in time; killing it", "service", c.name, "grace", grace)
			_ = c.cmd.Process.Kill()
			<-c.done
			deadline.Reset(0)
		}
		if c.err != nil {
			s.log.Info("service stopped", "service", c.name, "exit", c.err.Error())
		} else {
			s.log.Info("service stopped", "service", c.name)
		}
	}
}

// prefixWriter writes each line of a child's output prefixed with its name.
type prefixWriter struct {
	mu     *sync.Mutex
	out    io.Writer
	prefix []byte
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a huge line without newline: do not buffer forever
		w.flush()
	}
	return len(p), nil
}

func (w *prefixWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = nil
	}
}

func (w *prefixWriter) emit(line []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.out.Write(append(append([]byte{}, w.prefix...), line...))
}
