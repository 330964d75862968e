-- Starts for 50 viewers per thread, each start a new stream: past the first three of a
-- viewer, every start meets the limit (refused under reject, ending the viewer's oldest
-- stream under kick_oldest).
local counter = 0

function setup(thread)
  thread:set("tid", math.random(1, 0xfffff))
end

request = function()
  counter = counter + 1
  return wrk.format("POST", "/api/v1/streams",
    {["Content-Type"] = "application/json", ["X-User-Id"] = string.format("crowd-%d-%d", tid, counter % 50)},
    string.format('{"stream_id":"s%d"}', counter))
end
