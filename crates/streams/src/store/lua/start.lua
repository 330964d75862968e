-- ARGV: 1 stream id, 2 lease µs, 3 default limit, 4 metadata JSON, 5 '1' if the client chose
-- the id, 6 '1' to end the oldest streams at the limit (kick_oldest), 7 µs a replaced
-- stream is remembered.
-- Returns {'created'|'renewed', active, limit, started, expires, metadata, then for each
-- stream ended to make room: id, started, expires, metadata} or
-- {'refused', active, limit, now, earliest expiry}.
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
local kicked = {}
if active >= max then
  if ARGV[6] ~= '1' then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'refused', tostring(active), tostring(max), fmt(now), first[2] or fmt(expires)}
  end
  -- The oldest first (by start, then id), as many as leave room for one.
  local leases = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local oldest = {}
  for i = 1, #leases, 2 do
    local other = leases[i]
    oldest[#oldest + 1] = {other, tonumber(redis.call('HGET', KEYS[2], other) or '0'), leases[i + 1]}
  end
  table.sort(oldest, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  for i = 1, active - max + 1 do
    local old = oldest[i][1]
    kicked[#kicked + 1] = old
    kicked[#kicked + 1] = fmt(oldest[i][2])
    kicked[#kicked + 1] = oldest[i][3]
    kicked[#kicked + 1] = redis.call('HGET', KEYS[3], old) or '{}'
    redis.call('ZREM', KEYS[1], old)
    redis.call('HDEL', KEYS[2], old)
    redis.call('HDEL', KEYS[3], old)
    redis.call('HSET', KEYS[5], old, fmt(now) .. ' ' .. id)
  end
  redis.call('PEXPIRE', KEYS[5], math.ceil(tonumber(ARGV[7]) / 1000))
  active = active - #kicked / 4
end
redis.call('ZADD', KEYS[1], expires, id)
redis.call('HSET', KEYS[2], id, fmt(now))
redis.call('HSET', KEYS[3], id, ARGV[4])
redis.call('HDEL', KEYS[5], id)
keep(lease)
local reply = {'created', tostring(active + 1), tostring(max), fmt(now), fmt(expires), ARGV[4]}
for _, value in ipairs(kicked) do reply[#reply + 1] = value end
return reply
