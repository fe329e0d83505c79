// Package rawio reads and writes TCP connections with raw system calls,
// still waiting for readiness in the Go runtime's network poller.
//
// A socket read or write through the standard library enters the runtime's
// system-call bookkeeping (entersyscall), and the first one after the
// process went idle wakes the runtime's monitor thread, sysmon, which then
// polls every 20µs until every scheduler thread is idle again. A sidecar
// at a few thousand requests per second goes idle between most requests,
// so each request paid for that wake-up: two futex calls, three or four
// nanosleeps and two more context switches, beside its own read and write
// (bench/RESULTS.md, "where a tier hit's CPU goes"). The reads and writes
// of a non-blocking socket never block, so they need none of that
// bookkeeping: gVisor's fdbased endpoints and CloudWeGo's netpoll make them
// the same way.
//
// Conn keeps everything else of *net.TCPConn: deadlines (honoured while
// waiting in the poller), Close, addresses, SyscallConn. Waiting still
// goes through net's RawConn, so a Read or Write blocked on an idle peer
// parks its goroutine as usual, and Close or an expired deadline ends it
// with the usual errors.
package rawio
