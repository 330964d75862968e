-- ARGV: 1 stream id, 2 lease µs, 3 default limit, 4 metadata JSON, 5 '1' if the client chose
-- the id, 6 '1' to end the oldest streams at the limit (kick_oldest), 7 µs a replaced
-- stream is remembered, 8 the device ('' for none), 9 an active stream to replace ('' for
-- none), 10 '1' for a dry run (admit at the limit, noting what would have been done).
-- Returns {'created'|'renewed'|'over' (admitted at the limit in a dry run), active, limit,
-- started, expires, metadata, device, how many streams were ended, then for each: id,
-- started, expires, metadata, device, why ('asked', 'same_device' or 'oldest'); then, for
-- 'over' under kick_oldest, the ids that would have been ended} or
-- {'refused', active, limit, now, earliest expiry}.
local id, lease, device, asked = ARGV[1], tonumber(ARGV[2]), ARGV[8], ARGV[9]
local max = limit(ARGV[3])
local expires = now + lease
local score = ARGV[5] == '1' and redis.call('ZSCORE', KEYS[1], id)
if score then
  redis.call('ZADD', KEYS[1], expires, id)
  -- Metadata sent with a re-start replaces the stored metadata; none keeps it.
  if ARGV[4] ~= '{}' then
    redis.call('HSET', KEYS[3], id, ARGV[4])
  end
  keep(lease)
  local reply = {'renewed', tostring(redis.call('ZCARD', KEYS[1])), tostring(max), fields(id, expires)}
  reply[#reply + 1] = '0'
  return reply
end
local leases = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local active = #leases / 2
-- The stream the start names to replace, and the device's own active stream, give up
-- their slots to the new one.
local freed, why = {}, {}
for i = 1, #leases, 2 do
  if leases[i] == asked then
    freed[#freed + 1] = i
    why[i] = 'asked'
  end
end
if device ~= '' then
  for i = 1, #leases, 2 do
    if leases[i] ~= asked and redis.call('HGET', KEYS[6], leases[i]) == device then
      freed[#freed + 1] = i
      why[i] = 'same_device'
    end
  end
end
local others = active - #freed
local over = others >= max and ARGV[10] == '1'
if others >= max and not over and ARGV[6] ~= '1' then
  -- Refused: nothing changes, the device's own stream included.
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'refused', tostring(active), tostring(max), fmt(now), first[2] or fmt(expires)}
end
local ended = {}
local function replace(i, same)
  local old = leases[i]
  local started, until_, metadata, was = fields(old, leases[i + 1])
  for _, value in ipairs({old, started, until_, metadata, was, same}) do ended[#ended + 1] = value end
  drop(old)
  redis.call('HSET', KEYS[5], old, fmt(now) .. ' ' .. id .. ' ' .. device)
  redis.call('PEXPIRE', KEYS[5], math.ceil(tonumber(ARGV[7]) / 1000))
  active = active - 1
end
for _, i in ipairs(freed) do replace(i, why[i]) end
local would = {}
if active >= max then
  -- The oldest first (by start, then id), as many as leave room for one.
  local oldest = {}
  for i = 1, #leases, 2 do
    if not why[i] then
      oldest[#oldest + 1] = {i, tonumber(redis.call('HGET', KEYS[2], leases[i]) or '0'), leases[i]}
    end
  end
  table.sort(oldest, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  local room = active - max + 1
  for k = 1, room do
    if over then
      if ARGV[6] == '1' then would[#would + 1] = oldest[k][3] end
    else
      replace(oldest[k][1], 'oldest')
    end
  end
end
redis.call('ZADD', KEYS[1], expires, id)
redis.call('HSET', KEYS[2], id, fmt(now))
redis.call('HSET', KEYS[3], id, ARGV[4])
if device ~= '' then redis.call('HSET', KEYS[6], id, device) else redis.call('HDEL', KEYS[6], id) end
redis.call('HDEL', KEYS[5], id)
keep(lease)
local reply = {over and 'over' or 'created', tostring(active + 1), tostring(max), fmt(now), fmt(expires),
               ARGV[4], device, tostring(#ended / 6)}
for _, value in ipairs(ended) do reply[#reply + 1] = value end
for _, value in ipairs(would) do reply[#reply + 1] = value end
return reply
