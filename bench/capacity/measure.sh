#!/bin/bash
# measure.sh runs the measurements behind docs/capacity.md, in order, twice
# where a run is one sample; each test starts its own redis-server processes
# on free 127.0.0.1 ports and kills them by PID. Before each step it prints
# the load average and the busiest processes: on a shared host, say what
# else was running.
set -e
cd "$(dirname "$0")/../.."
export CI=true USERPROXY_TEST_REDIS_SERVER=$(command -v redis-server) USERPROXY_TEST_REDIS_CLI=$(command -v redis-cli)
snap() { echo "--- $(date -u +%T) load: $(cat /proc/loadavg)"; ps -eo pcpu,comm --sort=-pcpu | sed -n 2,6p | tr '\n' ';'; echo; }
for run in 1 2; do
	snap; USERPROXY_BENCH_CAPACITY=1 go test -count=1 -v -run 'TestMemory$' ./bench/capacity
	snap; USERPROXY_BENCH_CAPACITY=1 go test -count=1 -v -run 'TestCommands$' ./bench/capacity
done
snap; USERPROXY_BENCH_CAPACITY=1 go test -count=1 -v -run 'TestRedisCPU$' ./bench/capacity
snap; USERPROXY_BENCH_CAPACITY=1 go test -count=1 -v -run 'TestThroughput$' ./bench/capacity
snap; USERPROXY_BENCH_PUBSUB=1 go test -count=1 -v -timeout 20m -run 'TestMeasure$' ./bench/pubsub
snap
