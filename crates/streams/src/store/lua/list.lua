-- ARGV: 1 default limit. Returns {limit, id, started, expires, metadata, device, id, …}.
local out = {tostring(limit(ARGV[1]))}
local leases = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #leases, 2 do
  local id = leases[i]
  local started, expires, metadata, device = fields(id, leases[i + 1])
  out[#out + 1] = id
  out[#out + 1] = started
  out[#out + 1] = expires
  out[#out + 1] = metadata
  out[#out + 1] = device
end
return out
