-- A mix of every module's writes and reads, for the soak run: events, sessions, grades,
-- task grades, stream start then end, course reads, event lists. Distinct ids throughout,
-- so whatever the server keeps per id would show as growth.
local counter = 0

function setup(thread)
  thread:set("tid", math.random(1, 0xffff))
end

local function uuid(n)
  return string.format("%08x-0000-4000-8000-%012x", tid, n)
end

request = function()
  counter = counter + 1
  local n, step = counter, counter % 8
  local json = {["Content-Type"] = "application/json"}
  if step == 0 then
    return wrk.format("POST", "/api/events", json, string.format(
      '{"component":"soak","data":{"n":%d},"email":"s%d@x.io","environment":"soak","message":"event %d"}', n, n % 97, n))
  elseif step == 1 then
    local headers = {["Content-Type"] = "application/json", ["X-User-Id"] = uuid(n % 500)}
    return wrk.format("POST", "/courses/" .. uuid(1000000 + n % 20), headers, string.format(
      '{"sessionId":"%s","totalModulesStudied":%d,"averageScore":%d,"timeStudied":%d}', uuid(2000000 + n), n % 30, n % 100, n))
  elseif step == 2 then
    return wrk.format("POST", "/stats/student/grade", json, string.format(
      '{"student_id":"s%d","course_id":"c%d","grade":%d,"on_time":true}', n % 1000, n % 20, n % 101))
  elseif step == 3 then
    return wrk.format("POST", "/stats/student/task/grade", json, string.format(
      '{"student_id":"s%d","course_id":"c%d","task_id":"t%d","grade":%d}', n % 1000, n % 20, n % 10, n % 101))
  elseif step == 4 then
    local headers = {["Content-Type"] = "application/json", ["X-User-Id"] = "viewer-" .. tid .. "-" .. n}
    return wrk.format("POST", "/api/v1/streams", headers, string.format('{"stream_id":"s%d"}', n))
  elseif step == 5 then
    return wrk.format("DELETE", "/api/v1/streams/s" .. (n - 1), {["X-User-Id"] = "viewer-" .. tid .. "-" .. (n - 1)})
  elseif step == 6 then
    return wrk.format("GET", "/courses/" .. uuid(1000000 + n % 20), {["X-User-Id"] = uuid(n % 500)})
  else
    return wrk.format("GET", "/api/events?component=soak&limit=20")
  end
end
