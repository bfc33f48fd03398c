"""The webhook channel: the alert's JSON POSTed once to one URL (a Slack incoming webhook, or
any receiver that reads the fields)."""

import http.client
import json
from typing import Any

from pulse_pipeline.alerts.delivery import AlertNotDelivered, Deadline, post
from pulse_pipeline.printable import printable


def post_webhook(url: str, payload: dict[str, Any], deadline: Deadline) -> None:
    """POST the payload as JSON, connect to answer within the deadline. Only a 2xx answer is
    delivered: a redirect is not followed (the payload would be lost or re-sent elsewhere), and
    it or any other answer raises AlertNotDelivered with the status and the start of the
    answer's text (Slack says why there, e.g. `no_service`)."""
    missed = f"the webhook did not answer within {deadline.seconds:.4g} s"
    try:
        answer = post(url, json.dumps(payload).encode(), deadline, missed)
    except (OSError, http.client.HTTPException) as error:
        raise AlertNotDelivered(
            f"the webhook could not be reached ({type(error).__name__}: {error})"
        ) from None
    if 200 <= answer.status < 300:
        return
    said = printable(" ".join(answer.body[:200].decode(errors="replace").split()))
    if 300 <= answer.status < 400:
        reason = f"the webhook answered HTTP {answer.status}, a redirect, which is not followed"
    else:
        reason = f"the webhook answered HTTP {answer.status}"
    raise AlertNotDelivered(reason + (f" ({said})" if said else ""))
