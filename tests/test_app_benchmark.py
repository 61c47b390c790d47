"""app/benchmark.py reads wrk's report correctly (the benchmark itself runs by hand: it needs wrk)."""

import pytest

from benchmark import parse_wrk

WRK_OUTPUT = """Running 15s test @ http://127.0.0.1:41234/predict
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.53ms    3.21ms  61.03ms   90.12%
    Req/Sec     1.44k   102.33     1.60k    71.33%
  Latency Distribution
     50%    5.05ms
     75%    6.01ms
     90%    7.94ms
     99%   21.93ms
  21577 requests in 15.00s, 6.12MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   1438.41
Transfer/sec:    417.98KB
"""


def test_parses_throughput_percentiles_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result["requests_per_second"] == pytest.approx(1438.41)
    assert (result["p50_ms"], result["p99_ms"]) == (pytest.approx(5.05), pytest.approx(21.93))
    assert result["requests"] == 21577
    assert (result["non_2xx"], result["socket_errors"]) == (3, 3)


def test_microseconds_and_seconds_are_converted_to_milliseconds() -> None:
    output = WRK_OUTPUT.replace("5.05ms", "756.00us").replace("21.93ms", "1.20s")
    result = parse_wrk(output)
    assert (result["p50_ms"], result["p99_ms"]) == (pytest.approx(0.756), pytest.approx(1200.0))
