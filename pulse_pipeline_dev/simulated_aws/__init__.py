"""A local AWS (STS and Cost Explorer) for the demo, the benchmark and tests; never in production.

``SimulatedAws(SimulationSettings(...))`` serves, on ``127.0.0.1`` and a free port in this
process, moto's own server with a thin WSGI layer in front (see ``wsgi.py``). It simulates:

* **GetCostAndUsage, exactly as pulse_pipeline calls it**: ``DAILY``, several of ``UnblendedCost``,
  ``AmortizedCost``, ``NetUnblendedCost`` or ``NetAmortizedCost``, ``GroupBy`` ``SERVICE`` then
  ``RECORD_TYPE``, ``TimePeriod.End`` exclusive. Amounts are deterministic per (seed, account,
  day, service, record type); ``Usage`` for every service, sometimes ``Credit`` or ``Tax``; the
  account's currency as ``Unit``; days ``Estimated`` by the calendar as in Cost Explorer (the
  open month, and the previous one until its bill closes on the 5th; see ``api.py``), never by
  the requested window. Pages of ``page_size`` groups with a ``NextPageToken`` tied to the
  request (``RequestChangedException`` if it changes, ``InvalidNextTokenException`` if
  malformed). Any other request shape is a ``ValidationException``, so a regression in the
  pipeline's request fails loudly.
* **AssumeRole** through moto (credentials in the role ARN's account), with
  ``denied_role_arns`` and ``required_external_ids`` answered by ``AccessDenied`` (403).
* **Failures to provoke through botocore's real HTTP and retry path**: throttling
  (``LimitExceededException``, STS ``Throttling``), credentials expiring mid-pagination, any
  error of ``INJECTABLE_ERROR_CODES`` on a given page, latency per account and for STS, a cap
  on concurrent requests, and pagination that never ends (new tokens forever, or a page that
  hands back its own token; see ``SimulationSettings``).
* **Counts** of requests per account, of ``AssumeRole`` calls and the peak of concurrent
  requests, and ``expected_cost`` to check what the pipeline stored.

moto's classes are not modified: in-process ``mock_aws`` keeps behaving like plain moto, and
several ``SimulatedAws`` can run in one process, each on its own port with its own settings.
They share moto's in-memory state with each other and with ``mock_aws``, which resets it when
it starts and stops: credentials assumed before that then read moto's default account
(123456789012), so assume roles again afterwards.

Example::

    with SimulatedAws(SimulationSettings(currency_by_account={"222222222222": "EUR"})) as aws:
        sts = boto3.client("sts", endpoint_url=aws.endpoint_url)
        ...
        os.environ.update(aws.environment())  # or pass it to a subprocess
"""

from pulse_pipeline_dev.simulated_aws.api import COST_METRICS, INJECTABLE_ERROR_CODES
from pulse_pipeline_dev.simulated_aws.data import service_names
from pulse_pipeline_dev.simulated_aws.server import SimulatedAws
from pulse_pipeline_dev.simulated_aws.settings import SimulationSettings

__all__ = [
    "COST_METRICS",
    "INJECTABLE_ERROR_CODES",
    "SimulatedAws",
    "SimulationSettings",
    "service_names",
]
