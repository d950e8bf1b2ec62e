--! keys: entry stats
--! args: ttl_ms namespace
-- Read a cache entry, refresh its TTL and count a hit or a miss of its namespace, in one round trip.
-- Returns the value, or nil.
local value = redis.call('GET', entry)
if value then
  redis.call('PEXPIRE', entry, ttl_ms)
  redis.call('HINCRBY', stats, namespace .. ':hits', 1)
else
  redis.call('HINCRBY', stats, namespace .. ':misses', 1)
end
redis.call('PEXPIRE', stats, ttl_ms)
return value
