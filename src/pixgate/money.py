"""Money as integers in a minor unit. Prices in config are decimal currency amounts."""

from __future__ import annotations

from decimal import Decimal

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
