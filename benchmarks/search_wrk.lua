-- wrk script for benchmarks/search.py: GET /v1/search with the queries in $QUERIES (one URL-encoded per line),
-- in turn, with the API key in $KEY; prints one JSON line with the latency percentiles at the end.
local queries = {}
local auth = {["Authorization"] = "Bearer " .. os.getenv("KEY")}
local n = 0
local made = 0

-- each wrk thread starts at its own place in the list (plus $START, so runs one after another send other
-- queries), so no two threads send the same query together
setup = function(thread)
  thread:set("tid", made)
  made = made + 1
end

init = function(args)
  for line in io.lines(os.getenv("QUERIES")) do queries[#queries + 1] = line end
  n = (tid or 0) * math.floor(#queries / 2) + tonumber(os.getenv("START") or "0")
end

request = function()
  n = n + 1
  return wrk.format("GET", "/v1/search?limit=10&q=" .. queries[(n % #queries) + 1], auth)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "duration_s": %.3f, "p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, ' ..
    '"max_ms": %.2f, "non2xx": %d, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
