#!/usr/bin/env python3
"""Starts a throw-away Prometheus that scrapes a running mlx-serve, then runs the dashboard's
queries against it and fails if the main panels would show "No data".

    grafana/scrape_check.py                      # scrapes localhost:8080
    grafana/scrape_check.py --target host:port --wait 8 --verbose

Send a few requests to the server first (a chat completion, then the same one again for a
response-cache hit) so the latency and token panels have something to show.
Needs the `prometheus` binary (Debian: apt-get install prometheus).
"""
import argparse
import json
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
# Panels whose queries must return data from any server that has answered a request.
MAIN_PANELS = {
    "Requests/s",
    "E2E p50",
    "Request rate by route and status",
    "End-to-end latency",
    "Time to first token",
    "Tokens/s",
    "Queue and running",
    "Resident memory",
}
# Grafana's own variables, replaced by values of the right shape.
SUBST = [("$__rate_interval", "30s"), ("$__interval", "5s"), ("$__range", "5m"),
         ("${model}", ".*"), ("$model", ".*")]


def panel_queries(dashboard):
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"]
            for a, b in SUBST:
                expr = expr.replace(a, b)
            yield panel["title"], expr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def query(base, expr):
    return get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--target", default="localhost:8080", help="mlx-serve host:port")
    ap.add_argument("--wait", type=float, default=6.0, help="seconds of scraping before querying")
    ap.add_argument("--verbose", action="store_true", help="print every query and its result size")
    args = ap.parse_args()

    prometheus = shutil.which("prometheus")
    if not prometheus:
        sys.exit("prometheus not found (apt-get install prometheus)")
    dashboard = json.loads((HERE / "dashboards" / "mlx-serve.json").read_text())

    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "prometheus.yml"
        # JSON is valid YAML.
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "mlx-serve", "metrics_path": "/metrics",
                                "static_configs": [{"targets": [args.target]}]}],
        }))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/prometheus.log", "w"))
        try:
            return check(base, args, dashboard, tmp)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def check(base, args, dashboard, tmp):
    deadline = time.time() + 30
    while True:
        try:
            up = query(base, 'up{job="mlx-serve"}')["data"]["result"]
            if up and up[0]["value"][1] == "1":
                break
        except OSError:
            pass
        if time.time() > deadline:
            print(pathlib.Path(f"{tmp}/prometheus.log").read_text()[-2000:], file=sys.stderr)
            print(f"FAIL: Prometheus could not scrape {args.target}/metrics", file=sys.stderr)
            return 1
        time.sleep(0.5)
    time.sleep(args.wait)

    failures, empty = 0, 0
    for title, expr in panel_queries(dashboard):
        reply = query(base, expr)
        if reply.get("status") != "success":
            print(f"FAIL [{title}] query error {reply.get('error')}: {expr}", file=sys.stderr)
            failures += 1
            continue
        n = len(reply["data"]["result"])
        if n == 0:
            empty += 1
            if title in MAIN_PANELS:
                print(f"FAIL [{title}] no data: {expr}", file=sys.stderr)
                failures += 1
            elif args.verbose:
                print(f"  (no data yet) [{title}] {expr}")
        elif args.verbose:
            print(f"  ok {n:3} series [{title}] {expr}")
    total = sum(1 for _ in panel_queries(dashboard))
    print(f"{total} queries: {total - empty} returned data, {empty} empty, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
