"""Money as integers in a minor unit. Prices in config are decimal currency amounts."""

from __future__ import annotations

from decimal import Decimal

from pixgate.errors import invalid

# 1 minor unit = 0.0001 of the currency (1/100 fen for CNY): fine enough for per-image
# prices like 0.015 and still an exact integer.
MINOR_PER_UNIT = 10_000


def to_minor(amount: Decimal | int | str) -> int:
    """Convert a currency amount to minor units, refusing anything that would round."""
    value = Decimal(str(amount)) * MINOR_PER_UNIT
    if value != value.to_integral_value():
        raise ValueError(f"amount {amount} has more than 4 decimal places")
    return int(value)


def from_minor(minor: int) -> Decimal:
    """Minor units -> currency, without trailing zeros or exponents ('10', '0.4')."""
    value = Decimal(minor) / MINOR_PER_UNIT
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


# The largest amount one operation may move (an admin credit, a code's value): far above
# any real top-up, and small enough that no sum of them reaches int64 (9.2e18 minor units).
# Without it an amount near int64 made SQLite store a float balance, and the audit crashed.
MAX_AMOUNT = 10**9
MAX_AMOUNT_MINOR = MAX_AMOUNT * MINOR_PER_UNIT
# No balance may grow past this by credits (1000x the largest single amount).
MAX_BALANCE_MINOR = 1000 * MAX_AMOUNT_MINOR


def check_amount(minor: int, field: str, *, negative: bool = False) -> int:
    """`minor` if it is within +-MAX_AMOUNT (0 to MAX_AMOUNT unless `negative`), else a
    400 naming `field` and the allowed range."""
    low = -MAX_AMOUNT if negative else 0
    if not low * MINOR_PER_UNIT <= minor <= MAX_AMOUNT_MINOR:
        got = from_minor(minor)
        raise invalid(
            field,
            f"must be an amount between {low} and {MAX_AMOUNT} (got {got})",
            f"金额必须在 {low} 到 {MAX_AMOUNT} 之间(收到 {got})",
        )
    return minor
