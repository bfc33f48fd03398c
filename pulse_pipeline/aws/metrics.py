"""Which Cost Explorer metrics a sync asks for, and which of them is each FOCUS cost column.

One GetCostAndUsage request may carry several `Metrics` at the same $0.01, so every request asks
for the configured metric (PULSE_COST_METRIC, what `amountEUR` is) and the billed and the
amortized figure beside it:

| FOCUS column   | PULSE_COST_METRIC UnblendedCost or AmortizedCost | NetUnblendedCost or NetAmortizedCost |
|----------------|--------------------------------------------------|--------------------------------------|
| BilledCost     | UnblendedCost                                    | NetUnblendedCost                     |
| EffectiveCost  | AmortizedCost                                    | NetAmortizedCost                     |
| ContractedCost | UnblendedCost                                    | UnblendedCost                        |

BilledCost is what the invoice charges (upfront fees on the day they are billed); EffectiveCost
spreads upfront and recurring commitment fees over the usage they cover (amortized);
ContractedCost is the cost at the account's negotiated rates before any discount is netted in
(Cost Explorer's unblended cost, which private pricing already lowers). The Net metrics net
discounts (EDP, private rate discounts) into each line; they are asked for only when configured.
"""

from dataclasses import dataclass

UNBLENDED = "UnblendedCost"
AMORTIZED = "AmortizedCost"
NET_UNBLENDED = "NetUnblendedCost"
NET_AMORTIZED = "NetAmortizedCost"
DEFAULT_METRIC = UNBLENDED
METRICS = (UNBLENDED, AMORTIZED, NET_UNBLENDED, NET_AMORTIZED)
_NET = frozenset({NET_UNBLENDED, NET_AMORTIZED})


@dataclass(frozen=True)
class FocusMetrics:
    """The Cost Explorer metric behind each FOCUS cost column."""

    billed: str
    effective: str
    contracted: str


def focus_metrics(configured: str) -> FocusMetrics:
    """The metric of each FOCUS cost column when `configured` is PULSE_COST_METRIC."""
    if configured in _NET:
        return FocusMetrics(NET_UNBLENDED, NET_AMORTIZED, UNBLENDED)
    return FocusMetrics(UNBLENDED, AMORTIZED, UNBLENDED)


def requested_metrics(configured: str) -> list[str]:
    """The Metrics of every request: the configured one first, then the FOCUS columns' ones."""
    wanted = focus_metrics(configured)
    return list(dict.fromkeys([configured, wanted.billed, wanted.effective, wanted.contracted]))
