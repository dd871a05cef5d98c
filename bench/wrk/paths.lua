-- wrk script: requests to a list of paths, in turn, each answer checked.
--
--   wrk -s paths.lua URL -- PATHS METHOD EXPECTED_STATUS
--
-- PATHS: one path (with query) per line. BENCH_TOKEN, when set, is sent as
-- a bearer token. Answers with another status are counted as "other"
-- (bench.sh refuses a run that has any).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  method, expected = args[2], tonumber(args[3])
  headers = { ["Content-Type"] = "application/json" }
  local token = os.getenv("BENCH_TOKEN")
  if token then
    headers["Authorization"] = "Bearer " .. token
  end
  -- A forged delivery carries a plausible body; the gate refuses it unread.
  body = method == "POST" and '{"request_id":"forged","status":"completed","result":{}}' or nil
  -- Threads start at different places in the list.
  k = math.random(#paths) - 1
  matched, other = 0, 0
end

function request()
  k = k % #paths + 1
  return wrk.format(method, paths[k], headers, body)
end

function response(status, _, _)
  if status == expected then
    matched = matched + 1
  else
    other = other + 1
  end
end

function done(summary, latency, _)
  local m, o = 0, 0
  for _, t in ipairs(threads) do
    m, o = m + t:get("matched"), o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"matched":%d,"other":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, m, o))
end
