--! keys: batch docs errors done_metrics stage_metrics error_metrics recent_errors failed_metrics counters
--! args: batch_id document version state stage category error stage_member error_member now *counted
-- Apply one document's state change to its batch's live state, if it is newer than what is held.
-- The counters move only when the document's state class really changes, and the metrics the
-- change carries are recorded. The batch's status is not touched here: the database settles it
-- (lifecycle.settled_status) and `settle.lua` copies it.
-- Returns -1 unknown batch, 0 stale (applied before, or older), 1 applied, 2 applied and no
-- document of the batch is open any more (the caller has the batch settled).

local RECENT_ERRORS = 200
-- MirrorState values (a test checks them against legaldoc.lifecycle)
local RUNNING, SUCCEEDED, FAILED = 'running', 'succeeded', 'failed'
local PENDING = 'pending'

if redis.call('EXISTS', batch) == 0 then return -1 end
version = tonumber(version)
local held = redis.call('HGET', docs, document)
local old_version, old_state, old_category = -1, false, ''
if held then
  local parts = {}
  for part in string.gmatch(held .. '|', '([^|]*)|') do parts[#parts + 1] = part end
  old_version, old_state, old_category = tonumber(parts[1]), parts[2], parts[4] or ''
end
if old_version >= version then return 0 end

if stage_member ~= '' then redis.call('ZADD', stage_metrics, now, stage_member) end
-- the exporter's counters (never decreasing): field, amount pairs
for i = 1, #counted, 2 do redis.call('HINCRBYFLOAT', counters, counted[i], counted[i + 1]) end
if error_member ~= '' then redis.call('ZADD', error_metrics, now, error_member) end
if error ~= '' then
  redis.call('LPUSH', recent_errors, batch_id .. '|' .. document .. '|' .. error)
  redis.call('LTRIM', recent_errors, 0, RECENT_ERRORS - 1)
end
redis.call('HSET', docs, document, version .. '|' .. state .. '|' .. stage .. '|' .. category)
if old_state ~= state then
  if old_state then redis.call('HINCRBY', batch, old_state, -1) end
  redis.call('HINCRBY', batch, state, 1)
end
if old_state == FAILED then
  if old_category ~= '' then redis.call('HINCRBY', batch, 'errors:' .. old_category, -1) end
  redis.call('ZREM', failed_metrics, batch_id .. '|' .. document .. '|' .. old_category)
end
if state == FAILED then
  redis.call('HINCRBY', batch, 'errors:' .. category, 1)
  redis.call('HSET', errors, document, error)
  redis.call('ZADD', failed_metrics, now, batch_id .. '|' .. document .. '|' .. category)
elseif old_state == FAILED then
  redis.call('HDEL', errors, document)
end
if state == SUCCEEDED then redis.call('ZADD', done_metrics, now, document) end
if state == RUNNING and redis.call('HEXISTS', batch, 'started_at') == 0 then
  redis.call('HSET', batch, 'started_at', now)
end
local open = redis.call('HMGET', batch, PENDING, RUNNING)
if (tonumber(open[1]) or 0) + (tonumber(open[2]) or 0) == 0 then return 2 end
return 1
