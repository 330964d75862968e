-- ARGV: 1 stream id, 2 default limit. Returns {started, expires, metadata, active, limit} or {}.
local id = ARGV[1]
local score = redis.call('ZSCORE', KEYS[1], id)
if not score then return {} end
local started = redis.call('HGET', KEYS[2], id) or fmt(now)
local metadata = redis.call('HGET', KEYS[3], id) or '{}'
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
return {started, fmt(tonumber(score)), metadata, tostring(redis.call('ZCARD', KEYS[1])), tostring(limit(ARGV[2]))}
