--! keys: lock
--! args: token
-- Delete a lock only when this holder's token is still in it. Returns 1 released, 0 not held.
if redis.call('GET', lock) == token then return redis.call('DEL', lock) end
return 0
