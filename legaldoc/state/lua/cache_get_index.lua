--! keys: index stats
--! args: ttl_ms namespace generation *types
-- A project's cached entity index: the fields of `types` when the hash is at `generation`.
-- A hit only when every wanted field is present. Returns {generation held or false, values...}.
local held = redis.call('HGET', index, 'gen')
if held ~= generation then
  redis.call('HINCRBY', stats, namespace .. ':misses', 1)
  redis.call('PEXPIRE', stats, ttl_ms)
  return {held or false}
end
local values = {}
local missing = 0
if #types > 0 then
  values = redis.call('HMGET', index, unpack(types))
  for i = 1, #values do if not values[i] then missing = missing + 1 end end
end
redis.call('PEXPIRE', index, ttl_ms)
redis.call('HINCRBY', stats, namespace .. (missing == 0 and ':hits' or ':misses'), 1)
redis.call('PEXPIRE', stats, ttl_ms)
local reply = {held}
for i = 1, #values do reply[#reply + 1] = values[i] end
return reply
