-- ARGV: 1 stream id, 2 default limit. Returns {started, expires, metadata, device, active,
-- limit} or {}.
local id = ARGV[1]
local score = redis.call('ZSCORE', KEYS[1], id)
if not score then return {} end
local started, expires, metadata, device = fields(id, score)
drop(id)
return {started, expires, metadata, device, tostring(redis.call('ZCARD', KEYS[1])), tostring(limit(ARGV[2]))}
