--! keys: index
--! args: ttl_ms base_generation generation replace *fields
-- Write an entity index: `fields` are (type, blob) pairs. The other types stay when the hash is at
-- `base_generation` (the one the writer read) and `replace` is not '1'; either way the hash ends
-- at `generation`. Writes go once their transaction commits, so a later writer's may land first:
-- the hash then holds another generation than the database, and the next reader misses (never a
-- stale read: readers compare it with the database's). Returns 1.
local held = redis.call('HGET', index, 'gen')
if replace == '1' or held ~= base_generation then
  redis.call('DEL', index)
end
redis.call('HSET', index, 'gen', generation)
for i = 1, #fields, 2 do redis.call('HSET', index, fields[i], fields[i + 1]) end
redis.call('PEXPIRE', index, ttl_ms)
return 1
