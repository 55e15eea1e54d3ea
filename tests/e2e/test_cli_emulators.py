"""`close2d365 emulators` as a user runs it: Ctrl-C stops it at once and cleanly (it once ran on 40 s later,
only SIGTERM stopped it), and a busy port names the option that changes it (it was an "unexpected error")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from migration_assets.cli import main

pytestmark = pytest.mark.e2e

# The bound on stopping: generous for a loaded machine, far below the 40 s the command once ignored Ctrl-C.
STOP_SECONDS = 15


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_emulators_stop_promptly_and_cleanly(stop: signal.Signals, isolated_home: Path) -> None:
    command = [sys.executable, "-m", "migration_assets.cli", "emulators", "--size", "tiny"]
    proc = subprocess.Popen(
        [*command, "--close-port", "0", "--dataverse-port", "0"],  # free ports
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CLOSE2D365_HOME": str(isolated_home)},
    )
    try:
        assert proc.stdout is not None
        banner = []
        for line in proc.stdout:  # up when it says how to stop it
            banner.append(line)
            if "Ctrl-C to stop." in line:
                break
        assert any("Close emulator" in line for line in banner), "".join(banner) + proc.stderr.read()  # type: ignore[union-attr]
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=STOP_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Stopping the emulators." in out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


@pytest.mark.parametrize("option", ["--close-port", "--dataverse-port"])
def test_a_busy_port_names_the_option_that_changes_it(
    option: str, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = {"--close-port": "0", "--dataverse-port": "0", option: str(busy_port)}
    argv = ["emulators", "--size", "tiny", *(x for pair in ports.items() for x in pair)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unexpected error" not in err and "Traceback" not in err, err
    emulator = "Close" if option == "--close-port" else "Dataverse"
    assert f"the {emulator} emulator cannot listen on 127.0.0.1:{busy_port}" in err, err
    assert "already in use" in err and f"choose another with {option} PORT" in err, err
