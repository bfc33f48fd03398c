"""Shared by the tests that run `dagster dev` (webserver + daemon) on loopback: Dagster's home on a
fresh PostgreSQL database, the process in its own group, and waiting for what it does."""

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import requests

from pulse_pipeline_dev.processes import stop_process_group
from pulse_pipeline_tests.databases import fresh_postgres_database

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 240) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def graphql(base: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


@contextmanager
def postgres_dagster_home(tmp_path: Path, prefix: str) -> Iterator[Path]:
    """The repository's local dagster.yaml, with Dagster's storage on a fresh PostgreSQL database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with fresh_postgres_database(prefix) as url:
        storage_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
        (home / "dagster.yaml").write_text(
            (REPO / "dagster.local.yaml").read_text()
            + f"\nstorage:\n  postgres:\n    postgres_url: {storage_url}\n"
        )
        yield home


@contextmanager
def interruptible_children() -> Iterator[None]:
    """Children started meanwhile stop on SIGINT and SIGTERM even when pytest was started in the
    background by a shell: that shell ignores SIGINT, an ignored signal stays ignored across
    exec, and Dagster's processes handle SIGTERM as SIGINT, so `dagster dev` would ignore the
    TERM and its group be KILLed only after the full timeout (30 s per `dagster dev`)."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@contextmanager
def running_dagster_dev(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """`dagster dev` on a free loopback port, in its own process group, stopped by that group's
    id; yields the webserver's address once it answers."""
    port = free_port()
    with log_path.open("w") as log:
        with interruptible_children():
            process = subprocess.Popen(
                [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=REPO,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: answers(f"{base}/server_info"), "the webserver", timeout=90)
            yield base
        finally:
            stop_process_group(process, timeout=30)
