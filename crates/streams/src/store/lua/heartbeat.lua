-- ARGV: 1 stream id, 2 lease µs. Returns {started, expires, metadata} or {} if not active.
local id, lease = ARGV[1], tonumber(ARGV[2])
if not redis.call('ZSCORE', KEYS[1], id) then return {} end
local expires = now + lease
redis.call('ZADD', KEYS[1], expires, id)
keep(lease)
return {redis.call('HGET', KEYS[2], id) or fmt(now), fmt(expires), redis.call('HGET', KEYS[3], id) or '{}'}
