package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuTicks returns utime + stime of the process whose /proc/PID/stat line
// is stat, in clock ticks. The command name, in parentheses, may itself
// hold spaces and ")", so the fields are counted after the last ")".
func cpuTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no \")\" in the stat line")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat line has %d fields after the name, want at least 13", len(f))
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return u + s, nil
}

// rssKiB returns VmRSS from a /proc/PID/status text, in KiB (0 if absent,
// as for a zombie).
func rssKiB(status string) int64 {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// group is one watched target: its processes and their direct children
// (nginx's workers, Varnish's cache process), read from /proc.
type group struct {
	name string
	pids []int
}

// members returns the group's PIDs and their direct children, as they are
// now (the children of every thread: a child may be forked by any).
func (g group) members() []int {
	var out []int
	for _, p := range g.pids {
		out = append(out, p)
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// cpu returns the group's CPU time so far, in clock ticks. A process that
// has gone is skipped: its time is lost, so the figure is a lower bound.
func (g group) cpu() int64 {
	var t int64
	for _, p := range g.members() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		if n, err := cpuTicks(string(b)); err == nil {
			t += n
		}
	}
	return t
}

// rss returns the group's resident memory now, in KiB.
func (g group) rss() int64 {
	var t int64
	for _, p := range g.members() {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p)); err == nil {
			t += rssKiB(string(b))
		}
	}
	return t
}

// parseGroup parses a -watch value, NAME=PID[,PID...].
func parseGroup(v string) (group, error) {
	name, list, ok := strings.Cut(v, "=")
	if !ok || name == "" || strings.ContainsAny(name, " =") {
		return group{}, fmt.Errorf("-watch %q: want NAME=PID[,PID...]", v)
	}
	g := group{name: name}
	for _, s := range strings.Split(list, ",") {
		p, err := strconv.Atoi(s)
		if err != nil || p <= 0 {
			return group{}, fmt.Errorf("-watch %q: %q is not a PID", v, s)
		}
		g.pids = append(g.pids, p)
	}
	return g, nil
}
