package zkserver

import "syscall"

// sysProcAttr puts the JVM in its own process group, so stopping it reaches
// any process it forks, and has the kernel kill it if this process dies
// without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
