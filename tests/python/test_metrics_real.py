"""Metrics, trace and `mlx-serve analyze` against the real binary on the default model.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_metrics_real.py

Starts `mlx-serve serve` with a trace file on a free port, sends a few short greedy requests
(one streaming, one failing), then checks:
  - /metrics counts them and `promtool check metrics` is clean (skipped without promtool),
  - grafana/check.sh passes on the scraped text (skipped without promtool),
  - a real Prometheus scraping the server answers the dashboard's main queries
    (grafana/scrape_check.py; skipped without prometheus),
  - `mlx-serve analyze` (text and --json) counts the requests the trace recorded,
  - /v1/stats and /health report latency percentiles.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

BIN = os.environ.get("MLX_SERVE_BIN")
ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    trace = tmp / "trace.jsonl"
    port = free_port()
    log = open(tmp / "server.log", "w")
    # The response cache is off here: these tests count engine work (prefix-cache queries,
    # prefill/decode histograms), which cache hits would skip.
    env = dict(os.environ, MLX_SERVE__TRACE__PATH=str(trace),
               MLX_SERVE__METRICS__PUBLISH_INTERVAL_MS="200",
               MLX_SERVE__CACHE__ENABLED="false")
    proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("server exited: " + (tmp / "server.log").read_text()[-3000:])
        try:
            if http("GET", base + "/health")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("server never became healthy")
    model = json.loads(http("GET", base + "/v1/models")[2])["data"][0]["id"]
    chat = {"model": model, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hi."}]}
    assert http("POST", base + "/v1/chat/completions", chat)[0] == 200
    assert http("POST", base + "/v1/chat/completions", chat)[0] == 200
    status, ctype, body = http("POST", base + "/v1/chat/completions", dict(chat, stream=True))
    assert status == 200 and "[DONE]" in body
    status, _, _ = http("POST", base + "/v1/chat/completions", dict(chat, model="no-such-model"))
    assert status == 404
    yield {"base": base, "port": port, "trace": trace, "tmp": tmp, "model": model}
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def sample(text, name, *labels):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or line.split("{")[0].split(" ")[0] != name:
            continue
        if all(lab in line for lab in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(server):
    deadline = time.time() + 10
    while True:
        status, ctype, text = http("GET", server["base"] + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), ctype
        if sample(text, "mlx_serve_requests_total") >= 4 or time.time() > deadline:
            return text
        time.sleep(0.2)


def test_metrics_count_the_requests(server):
    text = scrape(server)
    assert sample(text, "mlx_serve_requests_total", 'status="200"') == 3, text
    assert sample(text, "mlx_serve_requests_total", 'status="404"') == 1
    assert sample(text, "mlx_serve_errors_total", 'error_type="invalid_request_error"') == 1
    assert sample(text, "mlx_serve_generation_tokens_total") >= 3
    assert sample(text, "mlx_serve_time_to_first_token_seconds_count") == 3
    assert sample(text, "mlx_serve_request_prefill_time_seconds_count") == 3
    assert sample(text, "mlx_serve_model_weights_bytes") > 0
    assert sample(text, "mlx_serve_model_load_duration_seconds") > 0
    # The second, identical prompt reuses the first one's KV state.
    assert sample(text, "mlx_serve_prefix_cache_queries_total") == 3
    assert sample(text, "mlx_serve_prefix_cache_hits_total") >= 1
    assert sample(text, "mlx_serve_prefix_cache_entries") >= 1


def test_promtool_and_dashboard_check_accept_the_metrics(server):
    if not shutil.which("promtool"):
        pytest.skip("promtool not on PATH (apt-get install prometheus)")
    text = scrape(server)
    saved = server["tmp"] / "metrics.txt"
    saved.write_text(text)
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                          capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    check = subprocess.run(["bash", str(ROOT / "grafana" / "check.sh"), str(saved)],
                           text=True, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_scrapes_and_the_dashboard_queries_return_data(server):
    if not shutil.which("prometheus"):
        pytest.skip("prometheus not on PATH (apt-get install prometheus)")
    run = subprocess.run([sys.executable, str(ROOT / "grafana" / "scrape_check.py"),
                          "--target", f"127.0.0.1:{server['port']}"],
                         text=True, capture_output=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr


def test_analyze_counts_the_traced_requests(server):
    scrape(server)  # the trace line is written when the metrics actor handles the event
    lines = server["trace"].read_text().splitlines()
    assert len(lines) == 4, lines
    out = subprocess.run([BIN, "analyze", "--json", str(server["trace"])],
                         text=True, capture_output=True, check=True).stdout
    report = json.loads(out)
    assert report["records"] == 4 and report["malformed_lines"] == 0
    req = report["requests"]
    assert (req["total"], req["succeeded"], req["failed"]) == (4, 3, 1), req
    # Streaming does not change what is generated: the three successful requests share one
    # hash; the 404 never became a generation request and counts as unique on its own.
    assert req["unique"] == 2, req
    assert report["statuses"] == {"200": 3, "404": 1}
    text = subprocess.run([BIN, "analyze", str(server["trace"])],
                          text=True, capture_output=True, check=True).stdout
    assert "total 4  unique 2  succeeded 3  failed 1" in text, text


def test_stats_and_health_show_latency_percentiles(server):
    scrape(server)
    stats = json.loads(http("GET", server["base"] + "/v1/stats")[2])
    lat = stats["latency"]
    assert lat["requests_total"] == 4 and lat["errors_total"] == 1, lat
    assert lat["e2e_seconds"]["p50"] > 0 and lat["e2e_seconds"]["p99"] >= lat["e2e_seconds"]["p50"]
    assert lat["ttft_seconds"]["p95"] > 0
    health = json.loads(http("GET", server["base"] + "/health")[2])
    assert health["latency"]["requests_total"] == 4
    assert health["engine_stats"]["prefix_queries"] == 3
