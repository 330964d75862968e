-- ARGV: 1 stream id, 2 lease µs. Returns {started, expires, metadata, device}; {'replaced',
-- when, by which stream, its device} if it was ended to admit another; {} if it is not
-- active.
local id, lease = ARGV[1], tonumber(ARGV[2])
if not redis.call('ZSCORE', KEYS[1], id) then
  local replaced = redis.call('HGET', KEYS[5], id)
  if replaced then
    local at, by, device = string.match(replaced, '^(%S+) (%S+) ?(%S*)$')
    return {'replaced', at, by, device}
  end
  return {}
end
local expires = now + lease
redis.call('ZADD', KEYS[1], expires, id)
keep(lease)
return {fields(id, expires)}
