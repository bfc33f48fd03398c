"""The ECB's published history (`eurofxref-hist.zip`, or its CSV) as one rate per currency and day.

The file is a wide table, one row per ECB business day and one column per currency, with
`N/A` where a currency was not quoted; pandas turns it into one row per (day, currency). It is
imported here only, so the daily rate refresh pays for it and the sync runs do not.
"""

import io
from datetime import date
from decimal import Decimal, InvalidOperation

from pulse_pipeline.fx import EcbRate


def parse_ecb_history(archive: bytes, since: date | None = None) -> list[EcbRate]:
    """Every published rate (on or after `since`), exact as written, `N/A` cells skipped."""
    import pandas as pd

    table = pd.read_csv(
        io.BytesIO(archive),
        compression="zip" if archive[:2] == b"PK" else None,
        dtype=str,
        keep_default_na=False,
        skipinitialspace=True,
    )
    table.columns = [str(column).strip() for column in table.columns]
    currencies = [c for c in table.columns[1:] if c and not c.startswith("Unnamed:")]
    rates = table.melt(id_vars=table.columns[0], value_vars=currencies, var_name="currency")
    rates["value"] = rates["value"].str.strip()
    rates = rates[(rates["value"] != "") & (rates["value"] != "N/A")]
    days = pd.to_datetime(rates[table.columns[0]].str.strip(), format="%Y-%m-%d").dt.date
    parsed = []
    for day, currency, value in zip(days, rates["currency"], rates["value"], strict=True):
        if since is not None and day < since:
            continue
        try:
            parsed.append(EcbRate(currency, day, Decimal(value)))
        except InvalidOperation:
            raise ValueError(
                f"ECB history has a non-numeric rate for {currency} on {day}"
            ) from None
    return parsed
