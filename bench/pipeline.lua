-- pipeline.lua: every write carries 16 pipelined GET requests for the URL's
-- path (wrk counts each response as one request); prints the same parseable
-- BENCH line as report.lua. Latency is per batch of 16, in microseconds.
local depth = 16

init = function(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil) end
  batch = table.concat(r)
end

request = function()
  return batch
end

-- The `done` hook (percentiles and the BENCH line) is report.lua's, loaded from
-- beside this file.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
