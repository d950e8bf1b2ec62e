--! keys: index
--! args: ttl_ms base_generation generation replace *fields
-- Write an entity index: `fields` are (type, blob) pairs. A hash already at a newer generation is
-- kept (writes go after their transaction commits, so a later writer may have landed first). The
-- other types stay when the hash is at `base_generation` (the one the writer read) and `replace` is
-- not '1'; either way the hash ends at `generation`. Returns 1 written, 0 kept the newer one.
local held = redis.call('HGET', index, 'gen')
if held and tonumber(held) > tonumber(generation) then return 0 end
if replace == '1' or held ~= base_generation then
  redis.call('DEL', index)
end
redis.call('HSET', index, 'gen', generation)
for i = 1, #fields, 2 do redis.call('HSET', index, fields[i], fields[i + 1]) end
redis.call('PEXPIRE', index, ttl_ms)
return 1
