"""The simulation's WSGI application: its own GetCostAndUsage and AssumeRole checks before moto.

``SimulationApp`` wraps moto's server application (``moto.server.DomainDispatcherApplication``,
what ``ThreadedMotoServer`` serves) without changing it or any moto class:

* a Cost Explorer ``GetCostAndUsage`` request (JSON protocol, ``X-Amz-Target:
  AWSInsightsIndexService.GetCostAndUsage``) is answered here and never reaches moto;
* an STS ``AssumeRole`` call (query protocol, form body) goes through the injected faults and
  denials first; when none applies, moto answers it as always and issues credentials in the
  role ARN's account;
* everything else (other STS and Cost Explorer actions, ``/moto-api``) goes to moto unchanged.

A request's account is the account of the access key that signed it, as moto itself decides
(``moto.iam.models.get_account_id_from``): credentials from ``AssumeRole`` belong to the role
ARN's account; any other key belongs to moto's default account, 123456789012.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from moto.iam.models import get_account_id_from

from pulse_pipeline_dev.simulated_aws.api import (
    CostExplorerError,
    CostRequest,
    Group,
    answer,
    encode_token,
    groups,
    parse_request,
)
from pulse_pipeline_dev.simulated_aws.data import window_lines
from pulse_pipeline_dev.simulated_aws.faults import Faults, StsError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

GET_COST_AND_USAGE = "AWSInsightsIndexService.GetCostAndUsage"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def _read_body(environ: WSGIEnvironment) -> bytes:
    """The request body, left readable again for the application behind."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _respond(
    start_response: StartResponse, status: int, content_type: str, body: bytes
) -> list[bytes]:
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [body]


class SimulationApp:
    """A WSGI application: the simulated Cost Explorer and STS checks in front of moto."""

    def __init__(self, faults: Faults, moto_app: WSGIApplication) -> None:
        """Answer with ``faults.settings``; pass the rest to ``moto_app``."""
        self.faults = faults
        self.settings = faults.settings
        self.moto_app = moto_app
        # The groups of the last requests (by account and fingerprint): every page of a
        # request asks for the same groups, which a payer's thousands of lines make costly.
        self._groups: OrderedDict[tuple[str, str], list[Group]] = OrderedDict()
        self._groups_lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer ``GetCostAndUsage`` here; check ``AssumeRole``; leave the rest to moto."""
        try:
            if environ.get("HTTP_X_AMZ_TARGET") == GET_COST_AND_USAGE:
                body = json.dumps(self._get_cost_and_usage(environ)).encode()
                return _respond(start_response, 200, "application/x-amz-json-1.1", body)
            self._check_assume_role(environ)
        except CostExplorerError as error:
            return _respond(
                start_response, error.status, "application/x-amz-json-1.1", error.body()
            )
        except StsError as error:
            return _respond(start_response, error.status, "text/xml", error.body())
        return self.moto_app(environ, start_response)

    def _get_cost_and_usage(self, environ: WSGIEnvironment) -> dict[str, object]:
        access_key = _access_key(environ)
        account_id = get_account_id_from(access_key)
        self.faults.arrive(account_id)
        self.faults.check_credentials(account_id, access_key)
        request = parse_request(_read_body(environ))
        page = request.page_number(self.settings.page_size)
        self.faults.check_page(account_id, page)
        response = answer(
            request,
            self._grouped(account_id, request),
            currency=self.settings.currency_for(account_id),
            page_size=self.settings.page_size,
            first_estimated=self.settings.estimated_since(),
            endless=account_id in self.settings.endless_pages,
            account_names={
                account: self.settings.name_of(account)
                for account in self.settings.visible_accounts(account_id)
            },
        )
        if self.settings.repeat_token_at_page.get(account_id) == page:
            # The token this page was asked with, handed back as the next one.
            response["NextPageToken"] = encode_token(request.offset, request.fingerprint)
        return response

    def _grouped(self, account_id: str, request: CostRequest) -> list[Group]:
        """The request's groups over every line ``account_id`` sees, from the last requests'
        when one had the same parameters."""
        key = (account_id, request.fingerprint)
        with self._groups_lock:
            if key in self._groups:
                self._groups.move_to_end(key)
                return self._groups[key]
        visible = self.settings.visible_accounts(account_id)
        lines = [
            line
            for account in visible
            for line in window_lines(
                self.settings.seed,
                self.settings.services_for(account),
                account,
                request.start,
                request.end,
            )
        ]
        found = groups(request, lines, self.settings.tags)
        with self._groups_lock:
            self._groups[key] = found
            while len(self._groups) > 16:
                self._groups.popitem(last=False)
        return found

    def _check_assume_role(self, environ: WSGIEnvironment) -> None:
        content_type = environ.get("CONTENT_TYPE") or ""
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return
        form = parse_qs(_read_body(environ).decode("utf-8", "replace"))
        if form.get("Action") != ["AssumeRole"]:
            return
        caller_account_id = get_account_id_from(_access_key(environ))
        role_arn = form.get("RoleArn", [""])[0]
        external_id = form.get("ExternalId", [None])[0]
        self.faults.assume_role(caller_account_id, role_arn, external_id)


def _access_key(environ: WSGIEnvironment) -> str:
    """The access key id in the SigV4 ``Authorization`` header (empty if unsigned)."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION") or "")
    return match.group(1) if match else ""
