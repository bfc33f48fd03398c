"""An AWS connection of a CloudAccount: the role ARN and external ID rules, checked before any
AWS call, and which connection of an organisation syncs an AWS account connected twice."""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pulse_pipeline.accounts import CloudAccount, SyncError

ROLE_ARN = re.compile(r"arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):role/[\w+=,.@/-]{1,512}", re.ASCII)
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]", re.ASCII)


@dataclass(frozen=True)
class AwsConnection:
    """What STS needs to assume a customer's role; validated, so AWS is never asked in vain."""

    account: CloudAccount
    role_arn: str
    external_id: str = field(repr=False)
    aws_account_id: str

    @property
    def partition(self) -> str:
        """The AWS partition of the role: aws, aws-cn or aws-us-gov."""
        return self.role_arn.split(":")[1]

    @property
    def role_session_name(self) -> str:
        """`pulse-<CloudAccount id>`, so CloudTrail in the customer's account shows who called."""
        return _SESSION_NAME_UNSAFE.sub("-", f"pulse-{self.account.id}")[:64]


def connection_for(account: CloudAccount) -> AwsConnection:
    """Check an account's role ARN and external ID, or raise a SyncError saying what is wrong."""
    if not account.role_arn:
        raise SyncError(f"{account.label} has no IAM role ARN; reconnect the account in PULSE")
    match = ROLE_ARN.fullmatch(account.role_arn)
    if match is None:
        raise SyncError(
            f"{account.label} has a malformed IAM role ARN; expected "
            "arn:aws:iam::<12-digit account id>:role/<role name>"
        )
    if not account.external_id:
        raise SyncError(f"{account.label} has no external ID; reconnect the account in PULSE")
    if not EXTERNAL_ID.fullmatch(account.external_id):
        raise SyncError(
            f"{account.label} has an external ID AWS would reject "
            "(it must be 2 to 1224 characters of letters, digits and +=,.@:/-_)"
        )
    return AwsConnection(account, account.role_arn, account.external_id, match.group(1))


def aws_account_id(role_arn: str | None) -> str | None:
    """The 12-digit AWS account id in a role ARN, or None if the ARN is not valid."""
    match = ROLE_ARN.fullmatch(role_arn or "")
    return match.group(1) if match else None


def covering_account(
    account: CloudAccount, connected: Iterable[CloudAccount]
) -> CloudAccount | None:
    """The connection of the same organisation that syncs the same AWS account instead, if any.

    Of several connected CloudAccounts of one organisation with the same AWS account (the
    12-digit id in the role ARN), the one that syncs is the one that can: the one that synced
    successfully most recently (`lastSyncedAt`), else, when none ever did, the newest (a
    customer reconnecting after fixing their role). The others are refused before any AWS call.
    """
    target = aws_account_id(account.role_arn)
    if target is None:
        return None  # an invalid ARN is reported as such, not as a duplicate
    rivals = {
        other.id: other
        for other in connected
        if other.org_id == account.org_id and aws_account_id(other.role_arn) == target
    }
    rivals[account.id] = account
    winner = max(rivals.values(), key=_precedence)
    return None if winner.id == account.id else winner


def _precedence(account: CloudAccount) -> tuple[bool, datetime, datetime, str]:
    synced = account.last_synced_at
    return (
        synced is not None,
        synced or datetime.min,
        account.created_at or datetime.min,
        account.id,
    )


def shares_external_id(account: CloudAccount, accounts: Iterable[CloudAccount]) -> bool:
    """True if an older connection of another organisation has the same role and external ID.

    Whoever knows a role ARN and its external ID could read that AWS account's costs through
    PULSE (the confused deputy the external ID exists to prevent), so only the oldest such
    connection, whatever its status, may use them.
    """
    if not account.role_arn or not account.external_id:
        return False
    role = account.role_arn.casefold()
    return any(
        other.org_id != account.org_id
        and (other.role_arn or "").casefold() == role
        and other.external_id == account.external_id
        and _age(other) < _age(account)
        for other in accounts
    )


def _age(account: CloudAccount) -> tuple[datetime, str]:
    return (account.created_at or datetime.min, account.id)


def refuse_shared_external_id(account: CloudAccount, accounts: list[CloudAccount]) -> None:
    """Raise SyncError if an older connection of another organisation uses the same role ARN
    and external ID (the confused deputy)."""
    if shares_external_id(account, accounts):
        raise SyncError(
            f"{account.label} uses the same role ARN and external ID as a connection in another "
            "organisation, so it could read that organisation's costs (the confused deputy the "
            "external ID exists to prevent); PULSE must issue this connection a new external "
            "ID, and the role's trust policy must require it"
        )


def _why_it_syncs(covering: CloudAccount) -> str:
    if covering.last_synced_at is not None:
        return f"syncs (last synced successfully at {covering.last_synced_at:%Y-%m-%d %H:%M} UTC)"
    return "syncs (the newest connection; none has synced successfully yet)"


def refuse_duplicate(account: CloudAccount, connected: Iterable[CloudAccount]) -> None:
    """Raise SyncError if another connection of the organisation syncs the same AWS account
    (`covering_account`), naming it and why it is the one that syncs."""
    covering = covering_account(account, connected)
    if covering is not None:
        raise SyncError(
            f"{account.label} connects AWS account {aws_account_id(account.role_arn)}, which "
            f"CloudAccount {covering.id} ({covering.name}) of the same organisation "
            f"{_why_it_syncs(covering)}; disconnect or delete the connection you no longer use"
        )
