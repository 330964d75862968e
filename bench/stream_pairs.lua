-- Start+end pairs over many viewers. Odd requests start stream k; even requests end
-- stream k - 256, which started long enough ago to have committed, so an end never
-- overtakes its start (requests go out on different connections). Every pair has a
-- viewer of its own, so no viewer reaches its limit. Only the first 256 ends find
-- nothing (404).
local counter = 0
local lag = 256

function setup(thread)
  thread:set("tid", math.random(1, 0xfffff))
end

local function viewer(pair)
  return string.format("bench-%d-%d", tid, pair)
end

request = function()
  counter = counter + 1
  local pair = math.floor(counter / 2)
  if counter % 2 == 1 then
    return wrk.format("POST", "/api/v1/streams",
      {["Content-Type"] = "application/json", ["X-User-Id"] = viewer(pair)},
      string.format('{"stream_id":"s%d","video_name":"bench"}', pair))
  end
  local old = pair - lag
  return wrk.format("DELETE", "/api/v1/streams/s" .. old, {["X-User-Id"] = viewer(old)})
end
