"""Shared pytest setup.

When MLX_SERVE_BASE_URL is not given, the official-client tests in test_openai_client.py run
against a real server started here from MLX_SERVE_BIN on the default model (greedy, loopback,
free port). Other test modules start the servers they need themselves.
"""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

_server = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, *args, timeout=300):
    """Start `mlx-serve serve` on a free port; return (process, base_url, log_file)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="mlx-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{open(log.name).read()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url, log.name
        except Exception:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server never became healthy:\n{open(log.name).read()}")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def pytest_configure(config):
    global _server
    binary = os.environ.get("MLX_SERVE_BIN")
    if os.environ.get("MLX_SERVE_BASE_URL") or not binary:
        return
    proc, url, _ = start_server(binary)
    _server = proc
    os.environ["MLX_SERVE_BASE_URL"] = url + "/v1"


def pytest_unconfigure(config):
    if _server is not None:
        stop_server(_server)
