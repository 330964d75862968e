-- Distinct course grades over 1000 students and 20 courses.
local counter = 0

function setup(thread)
  thread:set("tid", math.random(1, 0xfff))
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"student_id":"%08x-0000-4000-8000-%012x","course_id":"bench-%d","grade":%d.%d,"on_time":%s}',
    tid, counter % 1000, counter % 20, counter % 10, counter % 10, counter % 3 == 0 and "false" or "true")
  return wrk.format("POST", "/stats/student/grade", {["Content-Type"] = "application/json"}, body)
end
