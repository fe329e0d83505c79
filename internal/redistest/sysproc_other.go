//go:build !linux

package redistest

import "syscall"

// sysProcAttr returns nil: only Linux has a parent-death signal, elsewhere
// the t.Cleanup registered by Start is what stops the server.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}
