-- zipf.lua: wrk script for the hot-hit scenario. Every request is
-- GET /api/users/{id} with id drawn from a Zipf law over 1..N (rank r has
-- weight 1/r^s) and the Authorization header rotating over the credentials
-- given, so the key set is N ids x len(credentials).
--
--   wrk -t2 -c64 -d10s -s bench/zipf.lua http://127.0.0.1:8080 -- \
--       N S SEED "Basic xxx" "Basic yyy" ...
--
-- The draws are precomputed in init() with a fixed seed (SEED + thread
-- number), so runs and systems see the same sequence and the request path
-- does no arithmetic: request() only cycles through prebuilt requests.
-- done() prints one RESULT line for bench/run (see report.lua).

local samples = 131072 -- per thread; a 10 s run cycles through it a few times
local reqs, nreqs, pos = {}, 0, 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

-- zipf_cdf returns the cumulative weights of ranks 1..n and their sum.
local function zipf_cdf(n, s)
  local cdf, sum = {}, 0
  for r = 1, n do
    sum = sum + 1 / r ^ s
    cdf[r] = sum
  end
  return cdf, sum
end

-- draw returns the smallest rank whose cumulative weight reaches u.
local function draw(cdf, n, u)
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function init(args)
  local n, s, seed = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local auths = {}
  for i = 4, #args do auths[#auths + 1] = args[i] end
  if not n or not s or not seed or #auths == 0 then
    error("usage: -- N S SEED AUTHORIZATION...")
  end
  local cdf, sum = zipf_cdf(n, s)
  math.randomseed(seed + (thread_no or 0))
  for i = 1, samples do
    local id = draw(cdf, n, math.random() * sum)
    local auth = auths[(i - 1) % #auths + 1]
    reqs[i] = wrk.format("GET", "/api/users/" .. id, { Authorization = auth })
  end
  nreqs = samples
end

function request()
  pos = pos % nreqs + 1
  return reqs[pos]
end

done = dofile((os.getenv("BENCH_DIR") or "bench") .. "/report.lua")
