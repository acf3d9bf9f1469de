from decimal import Decimal

import pytest

from factory_portal.money import CurrencyMismatch, Money, round_money
from factory_portal.units import joules_to_kwh, per_mtok


def test_round_money_is_half_even_per_currency():
    assert round_money(Decimal("0.125"), "USD") == Decimal("0.12")
    assert round_money(Decimal("0.135"), "USD") == Decimal("0.14")
    assert round_money(Decimal("12.5"), "JPY") == Decimal("12")
    assert round_money(Decimal("1.0005"), "KWD") == Decimal("1.000")


def test_money_refuses_mixed_currencies_and_floats():
    with pytest.raises(CurrencyMismatch):
        Money(Decimal("1"), "USD") + Money(Decimal("1"), "EUR")
    with pytest.raises(TypeError):
        Money(1.5, "USD")


def test_units():
    assert joules_to_kwh(7_200_000) == Decimal(2)
    assert per_mtok(Decimal("3"), 1_500_000) == Decimal(2)
    assert per_mtok(Decimal("3"), 0) is None
