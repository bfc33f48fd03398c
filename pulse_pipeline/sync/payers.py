"""One organisation's payer and member connections: every linked account's costs are held by
one CloudAccount, so no euro is counted twice.

A management (payer) account's Cost Explorer sees every member account, so when an organisation
connects a payer and also one of its members, the payer's connection holds the member's rows
(its data is the complete one: it sees every member, and the member sees nothing the payer does
not). Its write removes, inside its window, the rows another connection of the organisation
held for the same linked accounts; the member's own connection is then refused before any AWS
call, with a sentence saying where its costs are.
"""

from collections.abc import Iterable

from sqlalchemy import Connection

from pulse_pipeline.accounts import CloudAccount, SyncError
from pulse_pipeline.aws.connection import aws_account_id
from pulse_pipeline.db import queries
from pulse_pipeline.sync_window import SyncWindow


def refuse_covered_member(conn: Connection, account: CloudAccount) -> None:
    """Raise SyncError if another connected CloudAccount of the organisation (a payer) already
    holds this account's AWS costs as one of its linked accounts."""
    own = aws_account_id(account.role_arn)
    if own is None:
        return  # an invalid ARN is reported as such
    for holder_id in queries.connections_holding(conn, account.org_id, own, account.id):
        holder = queries.load_account(conn, holder_id)
        if (
            holder is None
            or holder.status not in queries.SYNCABLE_STATUSES
            or aws_account_id(holder.role_arn) == own
        ):
            continue  # disconnected, or the same AWS account connected twice (refuse_duplicate)
        payer = aws_account_id(holder.role_arn) or "unknown"
        raise SyncError(
            f"{account.label} connects AWS account {own}, a member of the AWS organization whose "
            f"management account {payer} is connected as CloudAccount {holder.id} "
            f"({holder.name}), which already syncs this account's costs; they are counted once, "
            "there, so this connection is not synced: disconnect it, or keep it knowing it "
            "stays in this state"
        )


def take_over_linked_accounts(
    conn: Connection, account: CloudAccount, window: SyncWindow, linked: Iterable[str]
) -> int:
    """The payer's write holds its linked accounts: rows other connections of the organisation
    held for them inside the window are removed. Returns how many."""
    own = aws_account_id(account.role_arn)
    members = {linked_id for linked_id in linked if linked_id != own}
    return queries.remove_linked_rows_of_others(conn, account, window, members)
