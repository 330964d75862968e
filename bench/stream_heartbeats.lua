-- Heartbeats of the 1 000 streams bench/run started beforehand (viewer beat-N, stream
-- "s"), round robin: each a renewal of an active lease.
local counter = 0

function setup(thread)
  thread:set("offset", math.random(0, 999))
end

request = function()
  counter = counter + 1
  local viewer = "beat-" .. ((counter + offset) % 1000)
  return wrk.format("POST", "/api/v1/streams/s/heartbeat", {["X-User-Id"] = viewer})
end
