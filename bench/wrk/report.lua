-- bench/wrk/report.lua: wrk's request as given on the command line; at the end, one line
--   BENCHJSON {"requests":..,"duration_us":..,"bytes":..,"p50_us":..,"p90_us":..,"p99_us":..,"errors":{..}}
-- that bench/bench.py reads. Other scripts load this file for the same line.

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
