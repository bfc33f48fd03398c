"""``SimulatedAws``: the simulation's server, on 127.0.0.1 and a free port, in this process."""

import threading
from datetime import date
from decimal import Decimal
from types import TracebackType
from typing import Self

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from pulse_pipeline_dev.simulated_aws.data import day_lines, service_names
from pulse_pipeline_dev.simulated_aws.faults import Faults
from pulse_pipeline_dev.simulated_aws.settings import SimulationSettings
from pulse_pipeline_dev.simulated_aws.wsgi import SimulationApp


class _QuietRequestHandler(MotoRequestHandler):
    """Moto's request handler without werkzeug's line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing."""


class SimulatedAws:
    """A local AWS (STS and Cost Explorer) answering like AWS would; a context manager.

    ``with SimulatedAws(settings) as aws:`` serves ``SimulationApp`` in front of moto on
    ``aws.endpoint_url``, in a thread of this process; leaving the block stops the server (its
    port then refuses connections). Counts stay readable after the block.
    """

    def __init__(
        self, settings: SimulationSettings | None = None, *, log_requests: bool = False
    ) -> None:
        """Prepare a simulation; nothing starts before ``__enter__`` / ``start``."""
        self.settings: SimulationSettings = settings or SimulationSettings()
        self._faults = Faults(self.settings)
        self._log_requests = log_requests
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        """Start the server and return the simulation."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def start(self) -> None:
        """Serve on 127.0.0.1 and a free port."""
        if self._server is not None:
            raise RuntimeError("The simulation is already running")
        app = SimulationApp(self._faults, DomainDispatcherApplication(create_backend_app))
        handler = MotoRequestHandler if self._log_requests else _QuietRequestHandler
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
        self._thread = threading.Thread(
            target=server.serve_forever, name="simulated-aws", daemon=True
        )
        self._thread.start()
        self._server = server

    def stop(self) -> None:
        """Stop serving and close the port; safe to call twice."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("The simulation is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3 (all services) at the simulation.

        Both region variables are set: the AWS CLI and other SDKs read ``AWS_REGION``, but
        botocore 1.44 only reads ``AWS_DEFAULT_REGION``.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "simulated",
            "AWS_SECRET_ACCESS_KEY": "simulated",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def request_count(self, account_id: str) -> int:
        """``GetCostAndUsage`` requests (pages) of ``account_id``, errors included."""
        return self._faults.requests_by_account().get(account_id, 0)

    def total_requests(self) -> int:
        """``GetCostAndUsage`` requests over all accounts."""
        return sum(self._faults.requests_by_account().values())

    def requests_by_account(self) -> dict[str, int]:
        """A snapshot of the request counts per account."""
        return self._faults.requests_by_account()

    def reset_request_counts(self) -> None:
        """Set every ``GetCostAndUsage`` request count back to zero.

        Neither ``assume_role_count``, the peak of concurrent requests nor the state of the
        injected faults (throttles sent, expired credentials) is reset.
        """
        self._faults.reset_request_counts()

    def peak_concurrent_requests(self) -> int:
        """The most ``GetCostAndUsage`` requests that were being answered at the same time."""
        return self._faults.peak_concurrent_requests()

    def assume_role_count(self, account_id: str) -> int:
        """``AssumeRole`` calls for roles of ``account_id`` (the role ARN's account).

        Every call that reached the server counts: throttled, denied and timed-out (the client
        gave up, the server still answered) ones included.
        """
        return self._faults.assume_role_count(account_id)

    def service_names(self) -> list[str]:
        """The services that have costs on every day (accounts without their own count)."""
        return service_names(self.settings.services_per_day)

    def expected_cost(
        self, account_id: str, day: date, service: str, record_type: str | None = None
    ) -> Decimal:
        """The cost reported for one service on one day (summed over record types if None).

        Every cost metric reports this same amount.
        """
        lines = day_lines(
            self.settings.seed, self.settings.services_for(account_id), account_id, day
        )
        return sum(
            (
                line.cost
                for line in lines
                if line.service == service and record_type in (None, line.record_type)
            ),
            Decimal(0),
        )
