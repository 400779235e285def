"""The real Codex CLI (`@openai/codex`, pinned) against mlx-serve's Responses API.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_codex.py

The server runs the scripted fake engine (`serve --fake --script FILE`): the first request is
answered with a tool call of Codex's shell tool (`exec_command` with `cmd` in Codex 0.169) that
creates files in a scratch directory, the second (carrying the command's output) with a final
text. Codex must run the command, print the final text, and the server must answer no request
with a 4xx or 5xx. Codex is installed by the test with npm into target/codex-test/ (once);
skipped with a message when MLX_SERVE_BIN or npm is missing.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import start_server, stop_server

BIN = os.environ.get("MLX_SERVE_BIN")
CODEX_VERSION = "0.169.0"
ROOT = Path(__file__).resolve().parents[2]
CODEX_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "codex-test"
FINAL = "All done: marker created by mlx-serve."

pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")


def codex_binary():
    """Codex from target/codex-test/ (installed on first use); None without npm."""
    binary = CODEX_DIR / "node_modules" / ".bin" / "codex"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        return None
    CODEX_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(CODEX_DIR),
         f"@openai/codex@{CODEX_VERSION}"],
        check=True,
        timeout=600,
    )
    return binary


@pytest.fixture(scope="module")
def codex():
    binary = codex_binary()
    if binary is None:
        print("npm is not installed: skipping the Codex CLI test")
        pytest.skip("npm is not installed: cannot install @openai/codex")
    return binary


def test_codex_exec_runs_a_scripted_tool_call_and_prints_the_answer(codex, tmp_path):
    command = "touch marker && echo from-codex > out.txt"
    script = [
        '<tool_call>{"name": "exec_command", "arguments": {"cmd": %s}}</tool_call>'
        % json.dumps(command),
        FINAL,
    ]
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps(script))
    # Codex's prompt (~39 KB of instructions and tool schemas) exceeds the fake's default
    # context of 2048 words.
    config = tmp_path / "server.toml"
    config.write_text('[model]\ncontext_length = 200000\n')
    proc, url, log = start_server(BIN, "--fake", "--script", str(script_file), "--config", str(config))
    try:
        models = json.loads(subprocess.run(
            ["curl", "-sf", url + "/v1/models"], capture_output=True, check=True, text=True
        ).stdout)
        model = models["data"][0]["id"]
        # Under target/, not /tmp: Codex refuses to put its helper binaries under a temp dir.
        home = Path(tempfile.mkdtemp(prefix="home-", dir=CODEX_DIR))
        (home / "config.toml").write_text(
            f'model = "{model}"\n'
            'model_provider = "local"\n\n'
            "[model_providers.local]\n"
            'name = "mlx-serve"\n'
            f'base_url = "{url}/v1"\n'
            'env_key = "MLX_SERVE_KEY"\n'
            'wire_api = "responses"\n'
        )
        work = tmp_path / "work"
        work.mkdir()
        env = {**os.environ, "CODEX_HOME": str(home), "MLX_SERVE_KEY": "local", "NO_COLOR": "1"}
        run = subprocess.run(
            [str(codex), "exec", "--skip-git-repo-check",
             "--dangerously-bypass-approvals-and-sandbox",
             "Create a file called marker here."],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = run.stdout + run.stderr
        shutil.rmtree(home, ignore_errors=True)
    finally:
        stop_server(proc)
    server_log = Path(log).read_text()
    assert run.returncode == 0, output
    assert (work / "marker").exists(), f"the tool call did not run:\n{output}"
    assert (work / "out.txt").read_text().strip() == "from-codex"
    assert FINAL in run.stdout, output
    statuses = re.findall(r"status[=:]\"?(\d{3})", server_log)
    assert statuses, server_log
    assert all(s.startswith("2") for s in statuses), server_log
    assert server_log.count("/v1/responses") >= 2, server_log
