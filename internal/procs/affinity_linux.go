package procs

import "golang.org/x/sys/unix"

// allowedCPUs reports which CPUs this process may run on, or nil (all) if
// its affinity set cannot be read.
func allowedCPUs() func(int) bool {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	return set.IsSet
}
