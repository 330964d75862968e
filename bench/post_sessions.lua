-- Distinct learning sessions: a new sessionId on every request, spread over 50 courses.
local counter = 0

function setup(thread)
  thread:set("tid", math.random(1, 0xfffff))
end

request = function()
  counter = counter + 1
  local session = string.format("%08x-%04x-4%03x-8%03x-%012x", tid, counter % 0xffff, counter % 0xfff, tid % 0xfff, counter)
  local course = string.format("00000000-0000-4000-8000-%012d", counter % 50)
  local body = string.format(
    '{"sessionId":"%s","totalModulesStudied":%d,"averageScore":%d.5,"timeStudied":%d}',
    session, counter % 15, counter % 100, counter * 7 % 100000)
  return wrk.format("POST", "/courses/" .. course,
    {["Content-Type"] = "application/json", ["X-User-Id"] = "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11"}, body)
end
