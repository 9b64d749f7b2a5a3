package main

import (
	"os"
	"syscall"
)

// sysProcAttr puts a child in its own process group, so Ctrl-C in the
// terminal reaches only the stack, which then stops the children in order;
// and has the kernel SIGTERM the child should the stack itself die.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
