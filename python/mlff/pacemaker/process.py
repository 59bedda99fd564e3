"""Running one pacemaker tool as a monitored subprocess.

The tool runs in its own process group (session) with the working directory set; its
stdout and stderr are merged, streamed line by line to a callback and appended to a log
file as they come. On timeout or Ctrl-C the whole group gets SIGTERM, then SIGKILL if it
has not ended within a grace period, so no worker of the tool outlives the run.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Deque, List, Optional, Sequence

#: seconds between SIGTERM and SIGKILL of the tool's process group
GRACE_SECONDS = 10.0
#: log lines kept for error messages
TAIL_LINES = 30


class TrainingError(RuntimeError):
    """A pacemaker step failed; the message ends with the last lines of its log."""

    def __init__(self, message: str, log_tail: Sequence[str] = (), log_path: Optional[Path] = None):
        self.log_tail = list(log_tail)
        self.log_path = log_path
        text = message
        if log_path is not None:
            text += f" (log: {log_path})"
        if self.log_tail:
            text += "\nlast lines of the log:\n" + "\n".join("    " + line for line in self.log_tail)
        super().__init__(text)


class ToolTimeoutError(TrainingError):
    """The tool ran past the configured timeout and was terminated."""


@dataclass
class ToolResult:
    returncode: int
    seconds: float
    tail: List[str]


def _terminate_group(proc: subprocess.Popen) -> None:
    """SIGTERM the tool's process group, SIGKILL what is left after the grace period (at
    once on a second Ctrl-C)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=GRACE_SECONDS)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    finally:
        try:  # the leader may have ended while a worker of its group lives on
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_tool(
    argv: Sequence[str],
    cwd: Path,
    log_path: Path,
    timeout: Optional[float] = None,
    echo: Optional[Callable[[str], None]] = None,
    env: Optional[dict] = None,
) -> ToolResult:
    """Run ``argv`` in ``cwd``; the merged output goes to ``log_path`` (appended) and ``echo``.

    Returns the exit status and the last log lines. A timeout terminates the process
    group and raises :class:`ToolTimeoutError`; KeyboardInterrupt terminates it and is
    re-raised.
    """
    tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)
    start = time.monotonic()
    name = Path(argv[0]).name
    with open(log_path, "a", buffering=1) as log:
        log.write(f"$ {' '.join(str(a) for a in argv)}\n")
        proc = subprocess.Popen(
            [str(a) for a in argv], cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        reader: Optional[threading.Thread] = None
        # from here on, whatever happens (Ctrl-C may come at any line) the tool does not outlive us
        try:

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = line.rstrip("\n")
                    log.write(line + "\n")
                    tail.append(line)
                    if echo is not None:
                        echo(line)

            reader = threading.Thread(target=pump, name=f"{name}-log", daemon=True)
            reader.start()
            proc.wait(timeout=timeout)
            reader.join(timeout=5)
            if reader.is_alive():  # a worker of the tool still holds the output open: end the group
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                reader.join()
        except subprocess.TimeoutExpired:
            _terminate_group(proc)
            assert reader is not None
            reader.join(timeout=5)
            log.write(f"mlff: {name} terminated after the timeout of {timeout:g} s\n")
            raise ToolTimeoutError(f"{name} did not finish within {timeout:g} s and was terminated",
                                   tail, log_path) from None
        except BaseException as exc:
            _terminate_group(proc)
            if reader is not None and reader.is_alive():
                reader.join(timeout=5)
            why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"stopped ({type(exc).__name__})"
            log.write(f"mlff: {name} {why}\n")
            raise
    return ToolResult(returncode=proc.returncode, seconds=time.monotonic() - start, tail=list(tail))
