-- Distinct event bodies: every request differs (thread id, counter, random part).
local counter = 0
local components = {"order", "billing", "auth", "search", "video"}
local environments = {"production", "staging", "development"}

function setup(thread)
  thread:set("tid", math.random(1, 1000000))
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"component":"%s","data":{"n":%d,"t":%d},"email":"user%d@example.com","environment":"%s","message":"bench event %d-%d failed"}',
    components[counter % #components + 1], counter, tid, counter % 997,
    environments[counter % #environments + 1], tid, counter)
  return wrk.format("POST", "/api/events", {["Content-Type"] = "application/json"}, body)
end
