-- wrk script: callback deliveries, each to its own lookup's URL with a body
-- naming that lookup's request_id (a static body cannot: request_ids are
-- unique per lookup).
--
--   wrk -s deliveries.lua URL -- TARGETS TEMPLATE THREADS
--
-- TARGETS: lines "<path> <request_id>"; TEMPLATE: the callback body with
-- @RID@ where the request_id goes; THREADS: wrk's -t. Each thread walks its
-- share of the targets in order; a thread that runs out starts again and
-- counts a wrap (bench.sh refuses a first-delivery run that wrapped).
--
-- WRK_RATE=<requests/s> paces the run at that total rate (see delay()).

local threads = {}
local next_thread_id = 1

function setup(thread)
  thread:set("id", next_thread_id)
  next_thread_id = next_thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  local targets_file, template_file, nthreads = args[1], args[2], tonumber(args[3])
  local f = assert(io.open(template_file, "r"))
  local template = f:read("*a")
  f:close()
  pre, post = template:match("^(.-)@RID@(.*)$")
  paths, rids = {}, {}
  local i = 0
  for line in io.lines(targets_file) do
    if i % nthreads == id - 1 then
      local path, rid = line:match("^(%S+) (%S+)$")
      paths[#paths + 1] = path
      rids[#rids + 1] = rid
    end
    i = i + 1
  end
  n, k = #paths, 0
  applied, duplicate, other, wrapped = 0, 0, 0, 0
  headers = { ["Content-Type"] = "application/json" }
  interval = nil
  local rate = tonumber(os.getenv("WRK_RATE") or "")
  if rate then
    interval = 1000 * nthreads / rate -- ms between sends of this thread
  end
end

function request()
  k = k + 1
  if k > n then
    k, wrapped = 1, wrapped + 1
  end
  return wrk.format("POST", paths[k], headers, pre .. rids[k] .. post)
end

function response(status, _, body)
  if status == 200 and body:find('"applied"', 1, true) then
    applied = applied + 1
  elseif status == 200 and body:find('"duplicate"', 1, true) then
    duplicate = duplicate + 1
  else
    other = other + 1
  end
end

-- Fixed rate: wrk 4 has no open-loop mode, so each thread hands out send
-- slots on a fixed schedule (WRK_RATE / threads per second) and a
-- connection waits for the next free slot. With enough connections (bench.sh
-- uses 50 for 1,000/s) a slow answer never delays the schedule; latency is
-- wrk's own, from send to answer.
if os.getenv("WRK_RATE") then
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]])
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  function delay()
    local now = now_ms()
    slot = math.max((slot or now) + interval, now - interval)
    return math.max(0, math.floor(slot - now + 0.5))
  end
end

function done(summary, latency, _)
  local a, d, o, w = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a, d, o, w = a + t:get("applied"), d + t:get("duplicate"), o + t:get("other"), w + t:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"applied":%d,"duplicate":%d,"other":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    a, d, o, w))
end
