"""The real Codex CLI (`@openai/codex`, pinned) against mlx-serve's Responses API.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_codex.py

The server runs the fake engine, so the model's replies are known; Codex runs its real loop:
request, tool call, shell command, tool output, final answer. Codex 0.169 offers its shell as
the function tool `exec_command` (`{"cmd": "…"}`).

- With a script (`serve --fake --script FILE`): the first request is answered with a scripted
  `exec_command` call that creates files in a scratch directory, the next one with a final text.
- Without one: the echo fake repeats the last message, so a prompt that *is* a tool call makes
  the "model" call the tool, and the next reply echoes the command's output.

Each run must create the files, finish with the expected text, and the server must answer no
request with a 4xx or 5xx. Codex is installed with npm on first use (`real_clients.py`, under
target/real-clients/); the tests skip with a message when MLX_SERVE_BIN or npm is missing.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import start_server, stop_server
from real_clients import CLIENTS, CODEX_VERSION, npm_install

BIN = os.environ.get("MLX_SERVE_BIN")
FINAL = "All done: marker created by mlx-serve."

pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")


@pytest.fixture(scope="module")
def codex():
    """The pinned Codex CLI, installed from npm on first use (skips when npm is missing)."""
    binary = npm_install("@openai/codex", CODEX_VERSION) / ".bin" / "codex"
    if not binary.exists():
        pytest.skip(f"@openai/codex@{CODEX_VERSION} installed no `codex` binary")
    return binary


def tool_call(command):
    """A call of Codex's shell tool in the markup the fake's tool parser reads."""
    return '<tool_call>{"name": "exec_command", "arguments": {"cmd": %s}}</tool_call>' % json.dumps(
        command
    )


def serve_fake(tmp_path, *args):
    # Codex's prompt (~39 KB of instructions and tool schemas) is far over the fake's default
    # context of 2048 words.
    config = tmp_path / "server.toml"
    config.write_text("[model]\ncontext_length = 200000\n")
    return start_server(BIN, "--fake", "--config", str(config), *args)


def run_codex(codex, url, prompt, work):
    """`codex exec` in `work` against the server at `url`; returns the completed process."""
    with urllib.request.urlopen(url + "/v1/models", timeout=10) as r:
        model = json.load(r)["data"][0]["id"]
    CLIENTS.mkdir(parents=True, exist_ok=True)
    # Under target/, not /tmp: Codex refuses to put its helper binaries under a temp dir.
    home = Path(tempfile.mkdtemp(prefix="codex-home-", dir=CLIENTS))
    try:
        (home / "config.toml").write_text(
            f'model = "{model}"\n'
            'model_provider = "mlx-serve"\n\n'
            "[model_providers.mlx-serve]\n"
            'name = "mlx-serve"\n'
            f'base_url = "{url}/v1"\n'
            'env_key = "MLX_SERVE_KEY"\n'
            'wire_api = "responses"\n'
        )
        env = {**os.environ, "CODEX_HOME": str(home), "MLX_SERVE_KEY": "local", "NO_COLOR": "1"}
        return subprocess.run(
            # No sandbox: bubblewrap may not work inside a container; the command only touches
            # the scratch directory.
            [str(codex), "exec", "--skip-git-repo-check",
             "--dangerously-bypass-approvals-and-sandbox", prompt],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def check_server_log(log):
    text = re.sub(r"\x1b\[[0-9;]*m", "", Path(log).read_text())
    requests = re.findall(r"method=(\w+) path=(\S+) status=(\d{3})", text)
    responses = [r for r in requests if r[1] == "/v1/responses"]
    assert len(responses) >= 2, text
    bad = [r for r in requests if not r[2].startswith("2")]
    assert not bad, f"requests answered with an error: {bad}\n{text}"


def test_codex_exec_runs_a_scripted_tool_call_and_prints_the_answer(codex, tmp_path):
    help_text = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
    if "--script" not in help_text:
        print("this mlx-serve has no `serve --fake --script`: skipping the scripted Codex test")
        pytest.skip("serve --script is not available")
    script = tmp_path / "script.json"
    script.write_text(json.dumps([tool_call("touch marker && echo from-codex > out.txt"), FINAL]))
    proc, url, log = serve_fake(tmp_path, "--script", str(script))
    work = tmp_path / "work"
    work.mkdir()
    try:
        run = run_codex(codex, url, "Create a file called marker here.", work)
    finally:
        stop_server(proc)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert (work / "marker").exists(), f"the tool call did not run:\n{output}"
    assert (work / "out.txt").read_text().strip() == "from-codex"
    assert FINAL in run.stdout, output
    check_server_log(log)


def test_codex_exec_runs_the_echoed_tool_call(codex, tmp_path):
    proc, url, log = serve_fake(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    try:
        run = run_codex(codex, url, tool_call("touch marker && echo from-codex-echo"), work)
    finally:
        stop_server(proc)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert (work / "marker").exists(), f"the tool call did not run:\n{output}"
    # The second reply echoes the tool output Codex sent back, so it ends the run with it.
    assert "from-codex-echo" in run.stdout, output
    check_server_log(log)
