//go:build !unix

package main

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate kills: there is no SIGTERM to send on this platform.
func terminate(p *os.Process) error { return p.Kill() }
