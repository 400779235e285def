"""The real Claude Code CLI against mlx-serve: its whole agent loop, as a user runs it.

    MLX_SERVE_BIN=target/debug/mlx-serve pytest tests/python/test_claude_code.py

Claude Code (the version pinned in real_clients.py) is installed from npm into
`target/real-clients/` on first use; the tests skip, saying why, without `npm`.

- With the scripted fake engine (`serve --fake --script`), the replies are known: a `Read` tool
  call, an `Edit` tool call, then a final text. Claude Code must run both tools, change the file
  on disk, and print the scripted text; no request may get a 4xx or 5xx.
- On the real Qwen2.5-Coder model, a one-turn `claude -p` run must end without an API error (the
  model's answer is not judged). Its first request is Claude Code's full ~12k-token prompt, so a
  cold CPU prefill takes minutes: the client's timeout is raised with `API_TIMEOUT_MS`.
"""

import json
import os
import re
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import start_server, stop_server
from real_clients import install_claude_code

BIN = os.environ.get("MLX_SERVE_BIN")
TOOL_MODEL_NAME = "qwen2.5-coder-0.5b-instruct"

pytestmark = pytest.mark.skipif(not BIN, reason="MLX_SERVE_BIN is not set")


def write_config(tmp, model, context_length=None):
    config = Path(tmp) / "config.toml"
    model_section = f'[model]\nname = "{model}"\n'
    if context_length:
        model_section += f"context_length = {context_length}\n"
    config.write_text(model_section + '[aliases]\n"claude-*" = ""\n')
    return config


def claude_env(url, home):
    env = dict(os.environ)
    env.update(
        ANTHROPIC_BASE_URL=url,
        ANTHROPIC_AUTH_TOKEN="local",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        # A cold CPU prefill of Claude Code's first prompt takes minutes on a small machine.
        API_TIMEOUT_MS="1800000",
        HOME=str(home),
    )
    env.pop("ANTHROPIC_API_KEY", None)
    return env


def run_claude(claude, url, repo, prompt, *args, timeout=600):
    home = Path(repo).parent / "home"
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [claude, "-p", prompt, "--output-format", "json", *args],
        cwd=repo,
        env=claude_env(url, home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    assert lines, f"claude printed no JSON result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1])


def request_statuses(url):
    """Counts of finished requests by HTTP status, from the server's own metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    counts = {}
    for line in text.splitlines():
        m = re.match(r'mlx_serve_requests_total\{[^}]*status="(\d+)"[^}]*\} (\S+)', line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + float(m.group(2))
    return counts


def test_claude_code_edits_a_file_through_scripted_tool_calls():
    claude = install_claude_code()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        target = repo / "settings.py"
        target.write_text("RETRIES = 1\nTIMEOUT = 30\n")
        subprocess.run(["git", "init", "-q", str(repo)], check=False)
        final = "Done: RETRIES is now 5 (scripted reply)."
        script = [
            # The first request carries the user's task; reply with a Read of the file.
            {
                "match": "raise RETRIES",
                "reply": '<tool_call>{"name": "Read", "arguments": {"file_path": "%s"}}</tool_call>' % target,
            },
            # The next one carries the Read result (the file's text): edit it.
            {
                "match": "TIMEOUT = 30",
                "reply": '<tool_call>{"name": "Edit", "arguments": {"file_path": "%s", '
                '"old_string": "RETRIES = 1", "new_string": "RETRIES = 5"}}</tool_call>' % target,
            },
            {"match": "RETRIES", "reply": final},
        ]
        script_file = Path(tmp) / "script.json"
        script_file.write_text(json.dumps(script))
        # The fake engine counts words as tokens: give it room for Claude Code's long prompt.
        config = write_config(tmp, "fake-coder", context_length=262144)
        proc, url, log = start_server(BIN, "--config", str(config), "--fake", "--script", str(script_file))
        try:
            result = run_claude(
                claude,
                url,
                repo,
                "Please raise RETRIES to 5 in settings.py.",
                "--permission-mode",
                "acceptEdits",
                "--allowedTools",
                "Read,Edit",
                "--max-turns",
                "6",
            )
            statuses = request_statuses(url)
        finally:
            stop_server(proc)
        server_log = Path(log).read_text()
        assert not result.get("is_error"), f"{result}\n{server_log[-3000:]}"
        assert result.get("api_error_status") is None, result
        assert result["result"].strip() == final, result
        assert result["num_turns"] >= 3, result
        assert target.read_text() == "RETRIES = 5\nTIMEOUT = 30\n", "Claude Code edited the file"
        failed = {s: n for s, n in statuses.items() if int(s) >= 400 and n > 0}
        assert not failed, f"requests with error statuses: {failed}\n{server_log[-3000:]}"
        assert statuses.get("200", 0) >= 3, statuses


def models_dir():
    return Path(os.environ.get("MLX_SERVE_MODELS") or Path.home() / ".cache" / "mlx-serve" / "models")


def test_claude_code_runs_on_the_real_coder_model_without_api_errors():
    claude = install_claude_code()
    if not (models_dir() / TOOL_MODEL_NAME).exists():
        pulled = subprocess.run([BIN, "pull", TOOL_MODEL_NAME], capture_output=True, text=True, timeout=1800)
        if pulled.returncode != 0:
            pytest.skip(f"{TOOL_MODEL_NAME} is not present and cannot be pulled: {pulled.stderr[-500:]}")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "notes.txt").write_text("hello\n")
        config = write_config(tmp, TOOL_MODEL_NAME)
        proc, url, log = start_server(BIN, "--config", str(config), timeout=600)
        try:
            result = run_claude(claude, url, repo, "Say hello in one word.", "--max-turns", "1", timeout=1800)
        finally:
            stop_server(proc)
        server_log = Path(log).read_text()
        assert result.get("api_error_status") is None, f"{result}\n{server_log[-3000:]}"
        assert result.get("terminal_reason") != "api_error", f"{result}\n{server_log[-3000:]}"
