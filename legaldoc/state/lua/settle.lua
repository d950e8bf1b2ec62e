--! keys: batch docs errors active
--! args: batch_id status finished_at created_at retention
-- Write a batch's status as the database settled it (lifecycle.settled_status). The write is
-- refused when it disagrees with the mirror's own counters: a final status while documents are
-- open (a recover reopened the batch since; its last document settles it again), or a running one
-- when none is (the batch finished since). A final batch leaves the active index and expires
-- after the retention period; a running one is (back) in the index and kept.
-- Returns 1 written, 0 refused or unknown batch.

-- BatchStatus and MirrorState values (a test checks them against legaldoc.lifecycle)
local FINISHED, CANCELLED = 'finished', 'cancelled'
local PENDING, RUNNING = 'pending', 'running'

if redis.call('EXISTS', batch) == 0 then return 0 end
local final = status == FINISHED or status == CANCELLED
local counts = redis.call('HMGET', batch, PENDING, RUNNING)
local open = (tonumber(counts[1]) or 0) + (tonumber(counts[2]) or 0)
if final == (open > 0) then return 0 end
if final then
  redis.call('HSET', batch, 'status', status, 'finished_at', finished_at)
  redis.call('ZREM', active, batch_id)
  for _, key in ipairs({batch, docs, errors}) do redis.call('EXPIRE', key, retention) end
else
  redis.call('HSET', batch, 'status', status)
  redis.call('HDEL', batch, 'finished_at')
  redis.call('ZADD', active, created_at, batch_id)
  for _, key in ipairs({batch, docs, errors}) do redis.call('PERSIST', key) end
end
return 1
