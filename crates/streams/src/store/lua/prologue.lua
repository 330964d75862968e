-- Shared start of every stream script. KEYS: 1 active leases (sorted set, score =
-- expiry in µs), 2 start times (hash), 3 metadata (hash), 4 limit override (string),
-- 5 streams ended to admit another (hash: id -> "when by-which-stream its-device"),
-- 6 devices (hash: id -> device, for streams started with one).
-- Time is Redis's clock, so every instance judges expiry alike, moved by the service
-- clock's shift (the last ARGV: 0 but in tests). A lease counts, and may be renewed,
-- until the grace (the ARGV before the shift, µs) has passed after its expiry.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[#ARGV])
local grace = tonumber(ARGV[#ARGV - 1])
local function fmt(n) return string.format('%.0f', n) end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - grace)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - grace)
  redis.call('HDEL', KEYS[2], unpack(expired))
  redis.call('HDEL', KEYS[3], unpack(expired))
  redis.call('HDEL', KEYS[6], unpack(expired))
end
local function limit(default) return tonumber(redis.call('GET', KEYS[4]) or default) end
-- Leases die with their keys: nothing outlives the longest lease by more than a second.
local function keep(lease)
  local ms = math.ceil((lease + grace) / 1000) + 1000
  for _, i in ipairs({1, 2, 3, 6}) do redis.call('PEXPIRE', KEYS[i], ms) end
end
-- An active lease's fields after its id: start, expiry, metadata, device ('' if none).
local function fields(id, expires)
  return redis.call('HGET', KEYS[2], id) or fmt(now), fmt(tonumber(expires)),
         redis.call('HGET', KEYS[3], id) or '{}', redis.call('HGET', KEYS[6], id) or ''
end
-- Forgets an active lease.
local function drop(id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[6], id)
end
