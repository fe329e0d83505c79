-- report.lua: the done() of bench's wrk scripts. It prints one line that
-- bench/run parses:
--
--   RESULT requests=N seconds=S rps=R p50_us=A p99_us=B errors=E non2xx=F
--
-- errors counts connect, read, write and timeout errors; non2xx counts
-- answers with another status (wrk's "Non-2xx or 3xx responses").
return function(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
