//go:build unix && !linux

package zkserver

import "syscall"

// sysProcAttr puts the JVM in its own process group, so stopping it reaches
// any process it forks. Only Linux offers a parent-death signal.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
