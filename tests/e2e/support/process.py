"""The binary under test and the processes the tests start.

The binary is `$SLUICE_BIN`, by default `target/debug/sluice` in the repository. Every process a
test starts is tracked here by PID until it has exited, so that the session can kill whatever a
failed test left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", str(REPO / "target" / "debug" / "sluice")))

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a gateway process: without any SLUICE_* setting of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(extra or {})
    return env


_live: dict[int, subprocess.Popen] = {}


def track(proc: subprocess.Popen) -> None:
    """Remembers a started process until `untrack`."""
    _live[proc.pid] = proc


def untrack(proc: subprocess.Popen) -> None:
    """Forgets a process that has exited."""
    _live.pop(proc.pid, None)


def kill_leftovers() -> None:
    """SIGKILLs every tracked process still running: nothing a test started outlives the
    session."""
    for pid, proc in list(_live.items()):
        if proc.poll() is None:
            os.kill(pid, signal.SIGKILL)
            proc.wait(5)
