"""Headless Chromium for the UI tests: Debian's `chromium` (installed here when missing, as the project's own
test setup; a root shell on Debian needs nothing else), driven by Playwright's Python package, which talks
to that executable and never downloads a browser of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Without the background-networking flags Chromium keeps opening connections that a closed network refuses;
# --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CANDIDATES = ("chromium", "chromium-browser")


class BrowserUnavailable(RuntimeError):
    """No Chromium and no way to install it here: the message says what to install."""


def _found() -> str | None:
    configured = os.environ.get("CLOSE2D365_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return next((p for name in CANDIDATES if (p := shutil.which(name))), None)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


def ensure_chromium() -> str:
    """The Chromium executable: found on PATH (or CLOSE2D365_CHROMIUM), else installed with apt-get."""
    found = _found()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BrowserUnavailable(
            "the UI tests need Chromium: install Debian's package (sudo apt-get install chromium) or set "
            "CLOSE2D365_CHROMIUM to a Chromium executable"
        )
    install = _apt("install", "-y", "--no-install-recommends", "chromium")
    if install.returncode != 0:  # a fresh machine may have no package lists yet
        _apt("update")
        install = _apt("install", "-y", "--no-install-recommends", "chromium")
    found = _found()
    if install.returncode != 0 or found is None:
        raise BrowserUnavailable(f"apt-get install chromium failed: {install.stderr.strip()[-500:]}")
    return found
