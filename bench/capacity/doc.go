// Package capacity holds the measurements behind docs/capacity.md: Redis
// memory per cached (user, scope), the Redis commands each request path
// costs through a real userproxy binary, the Redis CPU time of a hit and of
// a miss through the real store, and what one redis-server carries of
// their commands (redis-benchmark). They are tests that start
// their own redis-server processes (internal/redistest) and run only when
// USERPROXY_BENCH_CAPACITY is set:
//
//	USERPROXY_BENCH_CAPACITY=1 go test -count=1 -v -run 'TestMemory|TestCommands|TestRedisCPU|TestThroughput' ./bench/capacity
//
// Without it only the tests of the helpers run. The figures are logged, not
// asserted: they depend on the host.
package capacity
