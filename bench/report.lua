-- report.lua: wrk `done` hook that prints one parseable BENCH line of results.
-- Used by bench/run for every non-pipelined case. Latencies are microseconds.

-- Percentiles are computed here from the histogram (latency(i) returns the
-- i-th distinct latency value and its sample count; #latency is the number of
-- distinct values) because wrk 4.1's own percentile() returns 0 for high
-- percentiles when requests are pipelined.
local function percentiles(latency, ps)
  local n, total = #latency, 0
  for i = 1, n do
    local _, c = latency(i)
    total = total + c
  end
  local out, seen, k = {}, 0, 1
  for i = 1, n do
    local v, c = latency(i)
    seen = seen + c
    while k <= #ps and seen >= total * ps[k] / 100 do
      out[k] = v
      k = k + 1
    end
    if k > #ps then break end
  end
  for j = k, #ps do out[j] = latency.max end
  return out
end

done = function(summary, latency, requests)
  local e = summary.errors
  local p = percentiles(latency, {50, 90, 99})
  io.write(string.format(
    "\nBENCH requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, p[1], p[2], p[3], latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
