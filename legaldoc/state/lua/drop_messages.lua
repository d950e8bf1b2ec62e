--! keys: list scratch
--! args: database window documents
-- Take out of one queue list (kombu pushes on the left, workers pop on the right) the stage messages
-- of `documents` (ids separated by commas; with `database` not '', only messages stamped with that database), keeping
-- every other message in its order. One atomic call: a worker pops either before or after it.
-- Pass 1 reads the list `window` messages at a time and finds the rightmost message to drop; pass 2
-- pops from the left only that far, `window` at a time, and puts the messages kept back on the left
-- in their order (through `scratch`, so memory holds one window). Messages to the right of the last
-- one dropped (older ones, of other batches) are not touched. Returns the number dropped.
local wanted = {}
for id in string.gmatch(documents, '%d+') do wanted[id] = true end
local step = tonumber(window)
local pattern = "\"argsrepr\": \"%((%d+), '[^']*', %d+, '([^']*)'%)\""
local plain = "\"argsrepr\": \"%((%d+), '[^']*', %d+%)\""

local function drop(message)
  local id, db = string.match(message, pattern)
  if id == nil then
    if database ~= '' then return false end
    id = string.match(message, plain)
    if id == nil then return false end
  elseif database ~= '' and db ~= database then
    return false
  end
  return wanted[id] == true
end

local length = redis.call('LLEN', list)
local last = -1
for start = 0, length - 1, step do
  local part = redis.call('LRANGE', list, start, start + step - 1)
  for i, message in ipairs(part) do
    if drop(message) then last = start + i - 1 end
  end
end
if last < 0 then return 0 end

redis.call('DEL', scratch)
local dropped, left = 0, last + 1
while left > 0 do
  local part = redis.call('LPOP', list, math.min(step, left))
  left = left - #part
  local keep = {}
  for _, message in ipairs(part) do
    if drop(message) then dropped = dropped + 1 else keep[#keep + 1] = message end
  end
  if #keep > 0 then redis.call('RPUSH', scratch, unpack(keep)) end
end
while redis.call('LMOVE', scratch, list, 'RIGHT', 'LEFT') do end
return dropped
