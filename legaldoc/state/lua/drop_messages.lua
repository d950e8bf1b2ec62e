--! keys: scratch *lists
--! args: database window documents
-- Take out of queue lists (kombu pushes on the left, workers pop on the right) the stage messages of
-- `documents` (ids separated by commas; with `database` not '', only messages stamped with that
-- database), keeping every other message in its order. One atomic call: a worker pops either
-- before or after it. Per list, pass 1 reads it `window` messages at a time and marks the messages
-- to drop; pass 2 goes from the left to the last one marked: a run to drop is one LTRIM (never read
-- again), a run to keep is moved aside to `scratch` and put back on the left in its order at the
-- end. Messages to the right of the last one dropped (older ones, of other batches) are not touched.
-- A message's document is read after the plain text `"argsrepr": "(` (a plain search, no pattern
-- scan of the whole envelope). Returns the number dropped.
local wanted = {}
for id in string.gmatch(documents, '%d+') do wanted[id] = true end
local step = tonumber(window)
local marker = '"argsrepr": "('
local find, match = string.find, string.match

local function drop(message)
  local _, at = find(message, marker, 1, true)
  if at == nil then return false end
  local id, rest = match(message, "^(%d+), '[^']*', %d+(.)", at + 1)
  if id == nil or not wanted[id] then return false end
  if database == '' then return true end
  if rest ~= ',' then return false end
  return match(message, "^%d+, '[^']*', %d+, '([^']*)'%)", at + 1) == database
end

local dropped = 0
for _, list in ipairs(lists) do
  local length = redis.call('LLEN', list)
  local doomed, last = {}, 0
  for start = 0, length - 1, step do
    local part = redis.call('LRANGE', list, start, start + step - 1)
    for i = 1, #part do
      if drop(part[i]) then doomed[start + i] = true; last = start + i end
    end
  end
  if last > 0 then  -- positions 1..last: runs to drop are trimmed off, runs to keep set aside in order
    redis.call('DEL', scratch)
    local i = 1
    while i <= last do
      local j = i
      while j < last and (doomed[j + 1] == true) == (doomed[i] == true) do j = j + 1 end
      if doomed[i] then
        redis.call('LTRIM', list, j - i + 1, -1)
        dropped = dropped + j - i + 1
      else
        local left = j - i + 1
        while left > 0 do
          local part = redis.call('LPOP', list, math.min(step, left))
          redis.call('RPUSH', scratch, unpack(part))
          left = left - #part
        end
      end
      i = j + 1
    end
    while true do  -- back on the left: the rightmost first, each LPUSH putting its last value leftmost
      local part = redis.call('RPOP', scratch, step)
      if not part then break end
      redis.call('LPUSH', list, unpack(part))
    end
  end
end
return dropped
