"""Alerts end to end through `dagster dev` (webserver + daemon) on loopback, PostgreSQL
everywhere: the sensors sync and write statuses by themselves, and each account's change of
state reaches a local webhook and a real local SMTP server once."""

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from pulse_pipeline_tests.alert_receivers import MailReceiver, WebhookReceiver
from pulse_pipeline_tests.daemon import graphql, wait_for
from pulse_pipeline_tests.shared_dagster import (
    ALERT_UI_URL,
    ALERTS_ACCOUNTS,
    ALERTS_EXTERNAL_ID,
    ALERTS_FIXED,
    SMTP_PASSWORD,
    SharedDagster,
)
from pulse_pipeline_tests.support import account_status, set_account

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
RESOURCE = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    ... on ResourceDetails { configuredValues { key value type } }
  }
}"""
REPOSITORY = {"repositoryLocationName": "pulse_pipeline", "repositoryName": "__repository__"}


@pytest.fixture
def receivers(shared_dagster: SharedDagster) -> Iterator[tuple[WebhookReceiver, MailReceiver]]:
    """The session's receivers, answering again when the test ends."""
    yield shared_dagster.webhook, shared_dagster.mail
    shared_dagster.webhook.status, shared_dagster.mail.refuse = 200, False


@pytest.fixture
def pulse(shared_dagster: SharedDagster) -> str:
    return shared_dagster.pulse_url


def hooks(webhook: WebhookReceiver, tried: bool = False) -> list[dict[str, Any]]:
    """The webhook messages about this module's accounts (the session's others send theirs)."""
    return [
        m
        for m in (webhook.tried if tried else webhook.received)
        if m["account_id"] in ALERTS_ACCOUNTS
    ]


def mails(mail: MailReceiver, tried: bool = False) -> list[EmailMessage]:
    """The emails about this module's accounts."""
    return [
        m
        for m in (mail.tried if tried else mail.messages)
        if any(f"({account})" in m["Subject"] for account in ALERTS_ACCOUNTS)
    ]


def launch_sync(base: str, account_id: str) -> str:
    """A sync of one account with its default window, launched as from the UI's job page."""
    launched = graphql(
        base,
        LAUNCH_RUN,
        {
            "params": {
                "selector": {**REPOSITORY, "jobName": "sync_aws_costs"},
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": account_id}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def status_written(home: Path, run_id: str) -> bool:
    """A write_sync_status run that covered the sync run has succeeded (alerts sent after it)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(
            dg.RunsFilter(job_name="write_sync_status", statuses=[dg.DagsterRunStatus.SUCCESS])
        )
        return any(
            run_id in run.run_config["ops"]["write_cloud_account_status"]["config"]["run_ids"]
            for run in runs
            if isinstance(run.run_config, dict)
        )


def sync_and_write(base: str, home: Path, account_id: str) -> str:
    run_id = launch_sync(base, account_id)
    wait_for(lambda: status_written(home, run_id), f"the status of run {run_id}")
    return run_id


def test_alerts_on_failure_and_recovery_once_and_never_at_the_cost_of_a_status(
    shared_dagster: SharedDagster, pulse: str, receivers: tuple[WebhookReceiver, MailReceiver]
) -> None:
    base, home = shared_dagster.base, shared_dagster.home
    webhook, mail = receivers

    # 1. Nobody launches anything: the first syncs run, acc-2's role is denied -> one alert.
    def settled() -> bool:
        return all(account_status(pulse, a)["status"] != "pending" for a in ("acc-1", "acc-2"))

    wait_for(settled, "the sensor-launched first syncs and their statuses")
    wait_for(lambda: hooks(webhook) and mails(mail), "the failure alert")
    assert account_status(pulse, "acc-1")["status"] == "active"
    broken = account_status(pulse, "acc-2")
    [failed] = hooks(webhook)
    assert {
        k: failed[k] for k in ("event", "account_id", "organisation_id", "previous_status")
    } == {
        "event": "sync_failed",
        "account_id": "acc-2",
        "organisation_id": "org-2",
        "previous_status": "pending",
    }
    assert failed["account_name"] == "org-2 production"
    assert failed["cause"] == broken["lastSyncError"] and "AccessDenied" in failed["cause"]
    assert failed["run_url"] == f"{ALERT_UI_URL}/runs/{failed['run_id']}"
    assert f"<{failed['run_url']}|run {failed['run_id'][:8]}>" in failed["text"]
    [email] = mails(mail)
    assert email["Subject"] == "PULSE sync failed: org-2 production (acc-2)"
    assert failed["cause"] in email.get_content() and failed["run_url"] in email.get_content()
    for secret in (
        ALERTS_EXTERNAL_ID,
        SMTP_PASSWORD,
    ):  # the role ARN is no secret: the cause names it
        assert secret not in str(failed) and secret not in email.as_string()

    # 2. The same account fails again: no second alert.
    sync_and_write(base, home, "acc-2")
    assert account_status(pulse, "acc-2")["status"] == "error"
    assert (len(hooks(webhook)), len(mails(mail))) == (1, 1)

    # 3. Both channels fail while acc-1 breaks: its status is written all the same.
    webhook.status, mail.refuse = 500, True
    set_account(pulse, "acc-1", roleArn="arn:aws:iam::711111111111:user/not-a-role")
    sync_and_write(base, home, "acc-1")
    assert account_status(pulse, "acc-1")["status"] == "error"
    assert (len(hooks(webhook, tried=True)), len(mails(mail, tried=True))) == (2, 2)
    assert (len(hooks(webhook)), len(mails(mail))) == (1, 1)

    # 4. Channels back; acc-2's customer fixes the role: one recovery alert.
    webhook.status, mail.refuse = 200, False
    set_account(pulse, "acc-2", roleArn=ALERTS_FIXED)
    fixed = sync_and_write(base, home, "acc-2")
    wait_for(lambda: len(hooks(webhook)) == 2 and len(mails(mail)) == 2, "the recovery alert")
    recovered = hooks(webhook)[1]
    assert recovered["event"] == "sync_recovered" and recovered["account_id"] == "acc-2"
    assert recovered["run_id"] == fixed and recovered["previous_status"] == "error"
    assert mails(mail)[1]["Subject"] == "PULSE sync recovered: org-2 production (acc-2)"
    assert account_status(pulse, "acc-2")["status"] == "active"

    # The Resources page names the password's variable, never its value.
    body = requests.post(
        f"{base}/graphql",
        json={
            "query": RESOURCE,
            "variables": {"selector": {**REPOSITORY, "resourceName": "alerts"}},
        },
        timeout=30,
    ).text
    assert SMTP_PASSWORD not in body and "s3cr3t-token" not in body
    values: dict[str, Any] = {
        v["key"]: (v["type"], v["value"])
        for v in graphql(base, RESOURCE, {"selector": {**REPOSITORY, "resourceName": "alerts"}})[
            "topLevelResourceDetailsOrError"
        ]["configuredValues"]
    }
    assert values["smtp_password"] == ("ENV_VAR", "PULSE_ALERT_SMTP_PASSWORD")
    assert values["webhook_url"] == ("ENV_VAR", "PULSE_ALERT_WEBHOOK_URL")
