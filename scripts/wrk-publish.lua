-- wrk-publish.lua: POST /api/v1/messages with a relay-sized JSON body.
-- Usage: wrk -t1 -c32 -d8s -s scripts/wrk-publish.lua http://127.0.0.1:PORT -- [TOPICS] [TOKEN] [TARGET]
-- TOPICS (default 1): requests cycle over topics bench-0 .. bench-(TOPICS-1).
-- TOKEN: sent as "Authorization: Bearer TOKEN" when given ("" for none).
-- TARGET: relay (default) or centrifugo (POST /api/publish, X-API-Key:
-- bench-api-key, {"channel","data"}); the answer counted as success is
-- 201 for the relay, 200 for Centrifugo.
-- Answers other than 2xx show in wrk's "Non-2xx or 3xx responses" line.
local topics = 1
local bodies = {}
local i = 0

function init(args)
  topics = tonumber(args[1] or "1") or 1
  local centrifugo = args[3] == "centrifugo"
  local data = '{"seq":1,"sent_ns":1732679000000000000,"pub":0,"pad":"0123456789abcdef0123456789abcdef"}'
  for t = 0, topics - 1 do
    if centrifugo then
      bodies[t] = '{"channel":"bench-' .. t .. '","data":' .. data .. '}'
    else
      bodies[t] = '{"topic":"bench-' .. t .. '","payload":' .. data .. '}'
    end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if centrifugo then
    wrk.path = "/api/publish"
    wrk.headers["X-API-Key"] = "bench-api-key"
  else
    wrk.path = "/api/v1/messages"
  end
  if args[2] and args[2] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
end

function request()
  local b = bodies[i % topics]
  i = i + 1
  return wrk.format(nil, nil, nil, b)
end

