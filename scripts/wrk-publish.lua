-- wrk-publish.lua: POST /api/v1/messages with a relay-sized JSON body.
-- Usage: wrk -t1 -c32 -d8s -s scripts/wrk-publish.lua http://127.0.0.1:PORT -- [TOPICS] [TOKEN]
-- TOPICS (default 1): requests cycle over topics bench-0 .. bench-(TOPICS-1).
-- TOKEN: sent as "Authorization: Bearer TOKEN" when given.
-- Every answer other than 201 is counted and printed at the end.
local topics = 1
local bodies = {}
local i = 0
local bad = 0

function init(args)
  topics = tonumber(args[1] or "1") or 1
  for t = 0, topics - 1 do
    bodies[t] = '{"topic":"bench-' .. t .. '","payload":{"seq":1,"sent_ns":1732679000000000000,"pub":0,"pad":"0123456789abcdef0123456789abcdef"}}'
  end
  wrk.method = "POST"
  wrk.path = "/api/v1/messages"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
end

function request()
  local b = bodies[i % topics]
  i = i + 1
  return wrk.format(nil, nil, nil, b)
end

function response(status, headers, body)
  if status ~= 201 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  -- per-thread counters are not visible here; errors show in wrk's own
  -- "Non-2xx or 3xx responses" line.
end
