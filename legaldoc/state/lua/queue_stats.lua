--! keys: *lists
--! args: lists_per_queue
-- Per queue (its `lists_per_queue` priority lists, in order): the messages waiting in all of them,
-- and the publishing time of the oldest (kombu pushes on the left and pops on the right, so each
-- list's oldest is at index -1; its time is matched out of the envelope, so only numbers cross
-- the wire). Returns JSON: [{depth, oldest}] in the order of the queues, oldest '' when empty.
local per_queue = tonumber(lists_per_queue)
local result = {}
for q = 1, #lists / per_queue do
  local depth, oldest = 0, ''
  for i = (q - 1) * per_queue + 1, q * per_queue do
    local n = redis.call('LLEN', lists[i])
    if n > 0 then
      depth = depth + n
      local sent = string.match(redis.call('LINDEX', lists[i], -1), '"legaldoc_sent": "([%d.]+)"')
      if sent and (oldest == '' or tonumber(sent) < tonumber(oldest)) then oldest = sent end
    end
  end
  result[q] = {depth = depth, oldest = oldest}
end
return cjson.encode(result)
