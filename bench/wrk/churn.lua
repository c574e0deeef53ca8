-- bench/wrk/churn.lua: route churn. Each request goes to one of BENCH_CHURN_IDS sandboxes
-- (c00000 .. c09999 for 10,000), chosen at random, through
--   Host: <BENCH_PORT>-c<NNNNN>.<BENCH_DOMAIN>
-- so the gateway's route cache, its Redis lookups and its per-sandbox upstream pools are all
-- exercised. The requests are formatted once in init(); request() only picks one.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local ids = tonumber(os.getenv("BENCH_CHURN_IDS") or "10000")
local port = os.getenv("BENCH_PORT") or "80"
local domain = os.getenv("BENCH_DOMAIN") or "bench.localhost"
local requests = {}
local count = 0
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("seed", threads)
end

function init(args)
   math.randomseed(7919 * (seed or 1))
   for i = 1, ids do
      local host = string.format("%s-c%05d.%s", port, i - 1, domain)
      requests[i] = wrk.format("GET", wrk.path, { Host = host })
   end
   count = ids
end

function request()
   return requests[math.random(count)]
end
