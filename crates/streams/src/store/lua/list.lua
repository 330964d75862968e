-- ARGV: 1 default limit. Returns {limit, id, started, expires, metadata, id, …}.
local out = {tostring(limit(ARGV[1]))}
local leases = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #leases, 2 do
  local id = leases[i]
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or fmt(now)
  out[#out + 1] = fmt(tonumber(leases[i + 1]))
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or '{}'
end
return out
