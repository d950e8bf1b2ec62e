--! keys: done_metrics recent_errors failed_metrics counters *change_keys
--! args: *changes
-- Apply document state changes to their batches' live state, each only if it is newer than what is
-- held: the changes a round trip carries (a stage's end, or the ends of the stages one task ran in
-- turn), or a bulk copy from the database. Each change has five keys in `change_keys`, in order
-- (batch docs errors stage_metrics error_metrics) and one JSON object in `changes` (batch_id
-- document version state stage category error stage_member error_member now counted: strings, and
-- counted a list of field, amount pairs).
-- The counters move only when a document's state class really changes, and the metrics a change
-- carries are recorded. The batch's status is not touched here: the database settles it
-- (lifecycle.settled_status) and `settle.lua` copies it.
-- Returns one code per change: -1 unknown batch, 0 stale (applied before, or older), 1 applied,
-- 2 applied and no document of the batch is open any more (the caller has the batch settled), or
-- the error that stopped that change ('ERR ...'; the changes before it in the call stay applied).

local RECENT_ERRORS = 200
-- MirrorState values (a test checks them against legaldoc.lifecycle)
local RUNNING, SUCCEEDED, FAILED = 'running', 'succeeded', 'failed'
local PENDING = 'pending'

local function apply(batch, docs, errors, stage_metrics, error_metrics, change)
  if redis.call('EXISTS', batch) == 0 then return -1 end
  local batch_id, document, state, stage = change.batch_id, change.document, change.state, change.stage
  local category, error, now = change.category, change.error, change.now
  local version = tonumber(change.version)
  local held = redis.call('HGET', docs, document)
  local old_version, old_state, old_category = -1, false, ''
  if held then
    local parts = {}
    for part in string.gmatch(held .. '|', '([^|]*)|') do parts[#parts + 1] = part end
    old_version, old_state, old_category = tonumber(parts[1]), parts[2], parts[4] or ''
  end
  if old_version >= version then return 0 end

  if change.stage_member ~= '' then redis.call('ZADD', stage_metrics, now, change.stage_member) end
  -- the exporter's counters (never decreasing): field, amount pairs
  local counted = change.counted
  for i = 1, #counted, 2 do redis.call('HINCRBYFLOAT', counters, counted[i], counted[i + 1]) end
  if change.error_member ~= '' then redis.call('ZADD', error_metrics, now, change.error_member) end
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
end

-- One change that fails (a key of the wrong type) does not stop the others: its code is the error.
local codes = {}
for i, text in ipairs(changes) do
  local k = (i - 1) * 5
  local ok, code = pcall(apply, change_keys[k + 1], change_keys[k + 2], change_keys[k + 3], change_keys[k + 4],
                         change_keys[k + 5], cjson.decode(text))
  if not ok and type(code) == 'table' then code = code.err end
  codes[i] = ok and code or ('ERR ' .. tostring(code))
end
return codes
