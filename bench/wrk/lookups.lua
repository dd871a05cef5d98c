-- wrk script: POST /v1/lookups, each request a new person (so each one is
-- a create: the identity locks, the suppression check, the daily budget
-- when CREDIT_BUDGET_DAILY is set, the insert).
--
--   wrk -s lookups.lua URL -- PREFIX
--
-- BENCH_TOKEN is sent as the bearer token. Answers other than 202 are
-- counted as "other" (bench.sh refuses a run that has any).

local threads = {}
local next_thread_id = 1

function setup(thread)
  thread:set("id", next_thread_id)
  next_thread_id = next_thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1]
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
  }
  k, created, other = 0, 0, 0
end

function request()
  k = k + 1
  local body = string.format('{"email":"%s-%d-%d@bench.example"}', prefix, id, k)
  return wrk.format("POST", "/v1/lookups", headers, body)
end

function response(status, _, _)
  if status == 202 then
    created = created + 1
  else
    other = other + 1
  end
end

function done(summary, latency, _)
  local c, o = 0, 0
  for _, t in ipairs(threads) do
    c, o = c + t:get("created"), o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"created":%d,"other":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, c, o))
end
