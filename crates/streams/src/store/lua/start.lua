-- ARGV: 1 stream id, 2 lease µs, 3 default limit, 4 metadata JSON, 5 '1' if the client chose the id.
-- Returns {'created'|'renewed', active, limit, started, expires, metadata} or {'refused', active, limit, now, earliest expiry}.
local id, lease = ARGV[1], tonumber(ARGV[2])
local max = limit(ARGV[3])
local expires = now + lease
if ARGV[5] == '1' and redis.call('ZSCORE', KEYS[1], id) then
  redis.call('ZADD', KEYS[1], expires, id)
  -- Metadata sent with a re-start replaces the stored metadata; none keeps it.
  if ARGV[4] ~= '{}' then
    redis.call('HSET', KEYS[3], id, ARGV[4])
  end
  keep(lease)
  return {'renewed', tostring(redis.call('ZCARD', KEYS[1])), tostring(max),
          redis.call('HGET', KEYS[2], id) or fmt(now), fmt(expires), redis.call('HGET', KEYS[3], id) or '{}'}
end
local active = redis.call('ZCARD', KEYS[1])
if active >= max then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'refused', tostring(active), tostring(max), fmt(now), first[2] or fmt(expires)}
end
redis.call('ZADD', KEYS[1], expires, id)
redis.call('HSET', KEYS[2], id, fmt(now))
redis.call('HSET', KEYS[3], id, ARGV[4])
keep(lease)
return {'created', tostring(active + 1), tostring(max), fmt(now), fmt(expires), ARGV[4]}
