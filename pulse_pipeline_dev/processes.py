"""Dagster's processes started by the demo, the benchmark and the tests: each in its own process
group, stopped by that group's id (never by name)."""

import os
import signal
import subprocess
from contextlib import suppress


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """TERM the process's group, wait up to `timeout` s, then KILL whatever of it is left.

    `dagster dev` started from a non-interactive shell ignores a TERM sent to it alone, so the
    signal goes to the whole group it leads (start it with `start_new_session=True`).
    """
    with suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)
