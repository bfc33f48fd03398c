"""The simulated costs: which services an account uses and what each costs on each day.

Amounts come from a hash of (seed, account, day, service), so the same settings always give
the same costs, and every day has one ``Usage`` line per service plus, for some services, a
negative ``Credit`` or a ``Tax`` line.
"""

import functools
import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

# (Cost Explorer service name, typical daily cost in the account's currency)
KNOWN_SERVICES: tuple[tuple[str, str], ...] = (
    ("Amazon Elastic Compute Cloud - Compute", "140"),
    ("Amazon Simple Storage Service", "18"),
    ("Amazon Relational Database Service", "75"),
    ("EC2 - Other", "32"),
    ("Amazon Virtual Private Cloud", "9"),
    ("AmazonCloudWatch", "6"),
    ("AWS Lambda", "4"),
    ("Amazon DynamoDB", "12"),
    ("Amazon Elastic Load Balancing", "15"),
    ("Amazon Elastic Container Service", "24"),
    ("AWS Key Management Service", "1.2"),
    ("Amazon Route 53", "0.6"),
    ("Amazon Simple Queue Service", "0.8"),
    ("Amazon Simple Notification Service", "0.3"),
    ("AWS Secrets Manager", "0.5"),
    ("Amazon EC2 Container Registry (ECR)", "1.5"),
    ("AWS CloudTrail", "2"),
    ("Amazon CloudFront", "7"),
    ("Amazon ElastiCache", "20"),
    ("AWS Glue", "11"),
    ("Amazon Athena", "3"),
    ("Amazon Kinesis", "8"),
    ("AWS Backup", "2.5"),
    ("Amazon Elastic File System", "5"),
)
RECORD_TYPES: tuple[str, ...] = ("Usage", "Credit", "Tax")

_TEN_DECIMALS = Decimal("0.0000000001")


#: Every simulated cost is billed by AWS itself (Cost Explorer's BILLING_ENTITY).
BILLING_ENTITY = "AWS"


@dataclass(frozen=True)
class CostLine:
    """One (service, record type) cost of one account on one day."""

    day: date
    service: str
    record_type: str
    cost: Decimal
    account: str = ""


def service_names(count: int) -> list[str]:
    """The first ``count`` simulated service names, in the order the simulation reports them.

    Beyond the realistic list the names are made up: ``Simulated Service 025`` and so on.
    """
    names = [name for name, _ in KNOWN_SERVICES[:count]]
    names.extend(f"Simulated Service {n:03d}" for n in range(len(names) + 1, count + 1))
    return names


def format_amount(amount: Decimal) -> str:
    """A Cost Explorer style decimal string: plain notation, at most 10 decimals."""
    quantized = amount.quantize(_TEN_DECIMALS)
    return "0" if quantized == 0 else format(quantized.normalize(), "f")


def _unit_fraction(*parts: object) -> Decimal:
    """A deterministic number in [0, 1) from a hash of ``parts``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)


def _typical_cost(index: int) -> Decimal:
    return Decimal(KNOWN_SERVICES[index][1]) if index < len(KNOWN_SERVICES) else Decimal(1)


# Every page of a window asks for the same days again: caching them saves CPU the simulation
# shares with the pipeline in a benchmark.
@functools.lru_cache(maxsize=4096)
def day_lines(seed: int, services: int, account_id: str, day: date) -> tuple[CostLine, ...]:
    """Every cost line of ``account_id`` on ``day``: by service, ``Usage`` first."""
    lines: list[CostLine] = []
    for index, service in enumerate(service_names(services)):
        key = (seed, account_id, day.isoformat(), service)
        share = Decimal("0.05") + Decimal("0.95") * _unit_fraction(*key)
        usage = (_typical_cost(index) * share).quantize(_TEN_DECIMALS)
        lines.append(CostLine(day, service, "Usage", usage, account_id))
        pick = _unit_fraction(*key, "record-types")
        if pick < Decimal("0.15"):
            credit_share = Decimal("0.1") + Decimal("0.4") * _unit_fraction(*key, "Credit")
            credit = -(usage * credit_share).quantize(_TEN_DECIMALS)
            lines.append(CostLine(day, service, "Credit", credit, account_id))
        elif pick > Decimal("0.9"):
            tax = (usage * Decimal("0.08")).quantize(_TEN_DECIMALS)
            lines.append(CostLine(day, service, "Tax", tax, account_id))
    return tuple(lines)


@functools.lru_cache(maxsize=64)
def window_lines(
    seed: int, services: int, account_id: str, start: date, end: date
) -> tuple[CostLine, ...]:
    """Every cost line from ``start`` to ``end`` (exclusive), day by day."""
    days = (start + timedelta(days=n) for n in range((end - start).days))
    return tuple(line for day in days for line in day_lines(seed, services, account_id, day))
