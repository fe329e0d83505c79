package redistest

import "syscall"

// sysProcAttr asks Linux to SIGKILL redis-server when the test binary dies
// without running its cleanups (e.g. on a -timeout panic), so that no
// orphaned servers are left behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
