--! keys: batches active workers done_metrics recent_errors failed_metrics
--! args: batch_prefix error_metrics_prefix stage_metrics_prefix categories stages now visible recent percentile_sample
-- Everything the dashboard's main screen shows, in one round trip and as one JSON document (a
-- single bulk string parses far faster than thousands of RESP elements). Batch hashes and metric
-- sets are named by the prefixes given (state/keys.py) and an id; `categories` and `stages` are
-- JSON lists. Stage durations are percentiles over the hour's newest `percentile_sample` runs and
-- throughput is counted in 5-minute buckets, both in Redis, so a busy hour costs no more and no
-- metric crosses the wire.
now, visible = tonumber(now), tonumber(visible)

local ids, seen = {}, {}
for _, id in ipairs(redis.call('ZREVRANGE', active, 0, visible - 1)) do ids[#ids + 1] = id; seen[id] = true end
if #ids < visible then
  for _, id in ipairs(redis.call('ZREVRANGE', batches, 0, visible - 1)) do
    if not seen[id] and #ids < visible then ids[#ids + 1] = id; seen[id] = true end
  end
end
local shown = {}
for i, id in ipairs(ids) do shown[i] = {id = id, fields = redis.call('HGETALL', batch_prefix .. id)} end

local errors_24h = {}
for _, category in ipairs(cjson.decode(categories)) do
  errors_24h[category] = redis.call('ZCOUNT', error_metrics_prefix .. category, now - 86400, now)
end
local failed_24h = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', failed_metrics, now - 86400, now)) do
  local category = string.match(member, '|([^|]*)$') or ''
  failed_24h[category] = (failed_24h[category] or 0) + 1
end

local stage_stats = {}
for i, stage in ipairs(cjson.decode(stages)) do
  local key = stage_metrics_prefix .. stage
  local buckets = {}
  for b = 1, 12 do  -- 5-minute buckets, oldest first, the last one ending now
    buckets[b] = redis.call('ZCOUNT', key, '(' .. (now - (13 - b) * 300), now - (12 - b) * 300)
  end
  local members = redis.call('ZREVRANGEBYSCORE', key, now, now - 3600, 'LIMIT', 0, tonumber(percentile_sample))
  local durations = {}
  for j = 1, #members do
    local ms = string.match(members[j], '^[^|]*|[^|]*|([^|]*)|')
    if ms then durations[#durations + 1] = tonumber(ms) end
  end
  table.sort(durations)
  local m = #durations
  local p50, p95 = -1, -1
  if m > 0 then
    p50 = durations[math.max(1, math.ceil(m * 0.5))]
    p95 = durations[math.max(1, math.ceil(m * 0.95))]
  end
  stage_stats[i] = {stage = stage, count = redis.call('ZCOUNT', key, now - 3600, now), p50_ms = p50, p95_ms = p95,
                    per_5_minutes = buckets}
end

local first_done = redis.call('ZRANGEBYSCORE', done_metrics, now - 300, now, 'WITHSCORES', 'LIMIT', 0, 1)
local memory = string.match(redis.call('INFO', 'memory'), 'used_memory:(%d+)')
return cjson.encode({
  batches = shown, batch_count = redis.call('ZCARD', batches), active_count = redis.call('ZCARD', active),
  workers = redis.call('HGETALL', workers),
  done_last_5_minutes = redis.call('ZCOUNT', done_metrics, now - 300, now),
  done_since = #first_done > 0 and tonumber(first_done[2]) or now - 300,
  errors_24h = errors_24h, failed_24h = failed_24h,
  recent_errors = redis.call('LRANGE', recent_errors, 0, tonumber(recent) - 1),
  stages = stage_stats, memory = tonumber(memory or 0),
})
