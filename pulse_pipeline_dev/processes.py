"""Dagster's processes started by the demo, the benchmark and the tests: each in its own process
group, stopped by that group's id (never by name).

`code_server`, `daemon` and `webserver` are the production topology on loopback
(docs/operations.md "Deployment"): the code location in its own process, the webserver and the
daemon reaching it through `workspace.prod.yaml`. Given `workspace.yaml` instead, the webserver
and the daemon load the code location themselves (as the benchmark does).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the dagster, dagster-daemon and dagster-webserver commands
WORKSPACE = ROOT / "workspace.yaml"  # the code location loaded by the webserver and the daemon
PROD_WORKSPACE = ROOT / "workspace.prod.yaml"  # the code location served by `code_server`
LOCATION = "pulse_pipeline"  # the code location's name in both workspace files


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


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process_group(
    command: list[str], environment: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A command in its own process group, stopped by its process group id (TERM, then KILL)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_process_group(process)


@contextmanager
def code_server(environment: dict[str, str], log: Path, port: int) -> Iterator[None]:
    """`dagster code-server start` serving the code location on 127.0.0.1:`port`, once it
    answers gRPC health checks. Its environment is the one the code location and its runs see:
    DATABASE_URL, AWS, the PULSE_* settings."""
    command = [
        str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
        "-m", "pulse_pipeline.defs.definitions", "-a", "defs", "--location-name", LOCATION,
    ]  # fmt: skip
    health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)]
    with process_group(command, environment, log):
        deadline = time.monotonic() + 120
        while subprocess.run(health, capture_output=True, env=environment).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the code server did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield


def daemon(
    environment: dict[str, str], log: Path, workspace: Path = WORKSPACE
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`dagster-daemon run`: the run queue, the sensors and the schedules."""
    command = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]
    return process_group(command, environment, log)


@contextmanager
def webserver(
    environment: dict[str, str],
    log: Path,
    workspace: Path = WORKSPACE,
    read_only: bool = False,
) -> Iterator[str]:
    """`dagster-webserver` on a free port of 127.0.0.1 (`--read-only` if asked); yields its URL
    once the run queue's daemon reports healthy to it."""
    port = free_port()
    command = [
        str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace),
    ]  # fmt: skip
    with process_group([*command, *(["--read-only"] if read_only else [])], environment, log):
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while not _queue_daemon_healthy(url):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the webserver or the daemon did not come up; webserver log:\n"
                    f"{log.read_text()[-3000:]}"
                )
            time.sleep(1)
        yield url


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `data` of a GraphQL request to the webserver; its errors raise."""
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=600
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return dict(body["data"])


QUEUE_DAEMON_HEALTH = """
query QueueDaemonHealth {
  instance {
    daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { healthy } }
  }
}"""


def _queue_daemon_healthy(url: str) -> bool:
    try:
        data = graphql(url, QUEUE_DAEMON_HEALTH)
    except (requests.RequestException, RuntimeError):
        return False
    return bool(data["instance"]["daemonHealth"]["daemonStatus"]["healthy"])
