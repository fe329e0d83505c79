//go:build !linux

package procs

// allowedCPUs: every CPU (only Linux has /proc/stat anyway).
func allowedCPUs() func(int) bool { return nil }
