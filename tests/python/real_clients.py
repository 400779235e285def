"""The real agent CLIs the tests drive, pinned in one place, installed from npm on first use.

Each client is installed into its own folder under `target/real-clients/` (outside the source
tree, reused by later runs). Tests call `install_*()` and skip, saying why, when `npm` is missing
or the install fails (no registry, say).
"""

import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

# The versions the README says were checked. Change them here only.
CLAUDE_CODE_VERSION = "2.1.328"
CODEX_VERSION = "0.169.0"

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(os.environ.get("MLX_SERVE_CLIENTS_DIR") or ROOT / "target" / "real-clients")


def npm_install(package, version):
    """`npm install package@version` into its own folder; returns the folder's node_modules."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed: cannot install {package}@{version} for this test")
    folder = CLIENTS / f"{package.replace('/', '+')}-{version}"
    stamp = folder / ".installed"
    if not stamp.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"name": "mlx-serve-real-client", "private": true}\n')
        # --ignore-scripts: the postinstall scripts want a newer Node than Debian's and only
        # link the platform binary, which the optional dependency already carries.
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", f"{package}@{version}"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            pytest.skip(f"npm install {package}@{version} failed: {done.stderr[-800:]}")
        stamp.write_text(version)
    return folder / "node_modules"


def _arch():
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def install_claude_code():
    """Path of the `claude` native binary of the pinned Claude Code."""
    modules = npm_install("@anthropic-ai/claude-code", CLAUDE_CODE_VERSION)
    system = {"linux": "linux", "darwin": "darwin"}.get(platform.system().lower(), "win32")
    found = sorted(glob.glob(str(modules / "@anthropic-ai" / f"claude-code-{system}-{_arch()}*" / "claude")))
    if not found:
        pytest.skip(f"Claude Code {CLAUDE_CODE_VERSION} has no native binary for {system}-{_arch()}")
    return found[0]
