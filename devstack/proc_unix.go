//go:build unix && !linux

package main

import (
	"os"
	"syscall"
)

// sysProcAttr puts a child in its own process group, so Ctrl-C in the
// terminal reaches only the stack, which then stops the children in order.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
