-- walk.lua: wrk script for the cold-miss scenario. It walks the N x C
-- (id, credential) pairs, ids FIRST..FIRST+N-1, in a fixed pseudo-random
-- order (a multiplicative permutation: uniform over ids, no repeats), so
-- each id is requested once per credential until all pairs are used.
--
--   wrk -t2 -c64 -d10s -s bench/walk.lua http://127.0.0.1:8080 -- \
--       THREADS FIRST N "Basic xxx" "Basic yyy" ...
--
-- THREADS must equal wrk's -t: thread k takes pairs k, k+T, k+2T, ... of
-- the walk, so threads never repeat each other's pairs. Every run of the
-- same arguments walks the same sequence. done() prints one RESULT line.

local threads_seen = 0
local auths, nauth = {}, 0
local first, n, total, mult, offset
local step, i

function setup(thread)
  threads_seen = threads_seen + 1
  thread:set("thread_no", threads_seen)
end

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

function init(args)
  local threads = tonumber(args[1])
  first, n = tonumber(args[2]), tonumber(args[3])
  for k = 4, #args do auths[#auths + 1] = args[k] end
  nauth = #auths
  if not threads or not first or not n or nauth == 0 then
    error("usage: -- THREADS FIRST N AUTHORIZATION...")
  end
  total = n * nauth
  -- A multiplier coprime with total makes i -> (i*mult + offset) % total
  -- a permutation; near the golden ratio it scatters neighbours.
  mult = math.floor(total * 0.6180339887)
  while gcd(mult, total) ~= 1 do mult = mult + 1 end
  offset = math.floor(total / 3)
  step = threads
  i = (thread_no or 1) - 1
end

function request()
  local p = (i * mult + offset) % total -- exact: i*mult < 2^53
  i = (i + step) % total
  local id = first + p % n
  local auth = auths[math.floor(p / n) + 1]
  return wrk.format("GET", "/api/users/" .. id, { Authorization = auth })
end

done = dofile((os.getenv("BENCH_DIR") or "bench") .. "/report.lua")
