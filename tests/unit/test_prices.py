"""The price table the framework adapters cost their usage with."""

import math

import pytest

from starpod_session import InvalidInput, ModelPrice, PriceTable, UsageRecord
from starpod_session.prices import as_price_table


def test_a_price_is_dollars_per_million_tokens_of_each_kind() -> None:
    price = ModelPrice(input=2, output=8, cache_read=0.5, cache_write=2.5)
    assert price.cost(1_000_000, 0) == 2.0
    assert price.cost(input_tokens=500_000, output_tokens=250_000, cache_read=1_000_000, cache_write=400_000) == (
        1.0 + 2.0 + 0.5 + 1.0
    )


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "2", True, None, 2e15])
def test_a_price_that_is_not_a_finite_amount_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(InvalidInput, match="cache_read"):
        ModelPrice(cache_read=bad)  # type: ignore[arg-type]


def test_a_model_is_found_by_its_name_then_by_the_longest_dated_prefix() -> None:
    table = PriceTable({"gpt-4.1": ModelPrice(input=2), "gpt-4.1-mini": {"input": 0.4}, "claude": {"output": 1}})
    assert table.price_for("gpt-4.1") == ModelPrice(input=2)
    assert table.price_for("gpt-4.1-2025-04-14") == ModelPrice(input=2)
    assert table.price_for("gpt-4.1-mini-2025-04-14") == ModelPrice(input=0.4)
    assert table.price_for("claude@20250514") == ModelPrice(output=1)
    assert table.price_for("gpt-4.10") is None  # a prefix only counts before "-" or "@"
    assert table.price_for("o3") is None
    assert table.price_for(None) is None


def test_an_unknown_model_costs_nothing_and_its_usage_is_still_recorded() -> None:
    table = PriceTable({"gpt-4.1": {"input": 2, "output": 8, "cache_read": 0.5}})
    assert table.usage_record("gpt-4.1", input_tokens=1000, output_tokens=100, cache_read=4000) == UsageRecord(
        input_tokens=1000, output_tokens=100, cache_read=4000, cost_usd=(2000 + 800 + 2000) / 1e6, model="gpt-4.1"
    )
    assert table.usage_record("o3", output_tokens=10, user_id="u").cost_usd == 0.0
    assert table.cost(None, 10, 10) == 0.0


def test_the_table_is_a_frozen_copy_of_what_it_was_given() -> None:
    given = {"m": {"input": 1}}
    table = PriceTable(given)
    given["m"]["input"] = 99
    given["n"] = {"input": 5}
    assert table.price_for("m") == ModelPrice(input=1)
    assert table.price_for("n") is None
    with pytest.raises(TypeError):
        table.prices["x"] = ModelPrice()  # type: ignore[index]


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({"m": {"inputs": 1}}, "unknown price 'inputs'"),
        ({"m": 3}, "expected a ModelPrice or a mapping"),
        ({"m": {"output": -2}}, "'m'.*output"),
        ([("m", {})], "expected a mapping"),
        ({"": {}}, "prices"),
    ],
)
def test_a_malformed_table_is_refused(prices: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        PriceTable(prices)  # type: ignore[arg-type]


def test_as_price_table_takes_none_a_table_or_a_mapping() -> None:
    table = PriceTable({"m": {}})
    assert as_price_table(table) is table
    assert as_price_table(None).prices == {}
    assert as_price_table({"m": ModelPrice(output=3)}).price_for("m") == ModelPrice(output=3)
