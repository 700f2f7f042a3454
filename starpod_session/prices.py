"""Prices per model, so the framework adapters can put a cost on the usage they record.

A :class:`PriceTable` maps a model name to a :class:`ModelPrice` (US dollars per
million tokens of each kind). The adapters in :mod:`starpod_session.integrations`
take one as ``prices=`` and store ``cost_usd`` from it; a model the table does not
name costs 0, as it does when no table is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._common.validation import MAX_COST_USD, check_short_text
from .errors import InvalidInput
from .records import UsageRecord

__all__ = ["ModelPrice", "PriceTable", "as_price_table"]

_PER_TOKENS = 1_000_000


def _check_price(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(field, f"expected a number of US dollars per million tokens, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= MAX_COST_USD):
        raise InvalidInput(field, f"{value!r} is not a price in 0..{MAX_COST_USD:.0e} USD per million tokens")


def _price_field() -> Any:
    return attrs.field(default=0.0, validator=lambda _i, a, v: _check_price(a.name, v), converter=_as_float)


def _as_float(value: object) -> object:
    # Ints become floats; anything else is left for the validator to name.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


@attrs.frozen
class ModelPrice:
    """What one model costs, in US dollars per million tokens of each kind.

    ``input`` is the price of prompt tokens that were neither read from nor
    written to the provider's cache; ``cache_read`` and ``cache_write`` price
    those. Each is a finite number in 0..1e15; anything else raises
    :class:`~starpod_session.InvalidInput` naming the field.
    """

    input: float = _price_field()
    output: float = _price_field()
    cache_read: float = _price_field()
    cache_write: float = _price_field()

    def cost(self, input_tokens: int = 0, output_tokens: int = 0, cache_read: int = 0, cache_write: int = 0) -> float:
        """The cost in US dollars of that many tokens of each kind (capped at 1e15)."""
        total = (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_read * self.cache_read
            + cache_write * self.cache_write
        ) / _PER_TOKENS
        return min(total, MAX_COST_USD)


def _as_model_price(model: str, price: object) -> ModelPrice:
    if isinstance(price, ModelPrice):
        return price
    if isinstance(price, Mapping):
        unknown = sorted(str(key) for key in price if key not in {"input", "output", "cache_read", "cache_write"})
        if unknown:
            raise InvalidInput(
                "prices", f"{model!r}: unknown price {unknown[0]!r} (input, output, cache_read, cache_write)"
            )
        try:
            return ModelPrice(**price)
        except InvalidInput as error:
            raise InvalidInput("prices", f"{model!r}: {error}") from None
    raise InvalidInput("prices", f"{model!r}: expected a ModelPrice or a mapping, got {type(price).__name__}")


def _frozen_prices(prices: Mapping[str, ModelPrice | Mapping[str, float]]) -> Mapping[str, ModelPrice]:
    if not isinstance(prices, Mapping):
        raise InvalidInput("prices", f"expected a mapping of model names to prices, got {type(prices).__name__}")
    table = {check_short_text("prices", model): _as_model_price(model, price) for model, price in prices.items()}
    return MappingProxyType(table)


@attrs.frozen
class PriceTable:
    """Prices per model name; a frozen, validated copy of the mapping it is given.

    ``PriceTable({"gpt-4.1": ModelPrice(input=2, output=8, cache_read=0.5)})``, or
    the same with plain dicts for prices. A model is looked up by its exact name
    first, then by the longest name in the table that it starts with followed by
    ``-`` or ``@``, so ``gpt-4.1-2025-04-14`` finds ``gpt-4.1``.
    """

    prices: Mapping[str, ModelPrice] = attrs.field(converter=_frozen_prices)

    def price_for(self, model: str | None) -> ModelPrice | None:
        """The price of ``model``, or ``None`` when the table does not name it."""
        if model is None:
            return None
        exact = self.prices.get(model)
        if exact is not None:
            return exact
        best: str | None = None
        for name in self.prices:
            dated = model.startswith(name) and model[len(name) : len(name) + 1] in {"-", "@"}
            if dated and (best is None or len(name) > len(best)):
                best = name
        return None if best is None else self.prices[best]

    def cost(
        self,
        model: str | None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read: int = 0,
        cache_write: int = 0,
    ) -> float:
        """The cost in US dollars of that usage of ``model``; 0 for a model the table does not name."""
        price = self.price_for(model)
        return 0.0 if price is None else price.cost(input_tokens, output_tokens, cache_read, cache_write)

    def usage_record(
        self,
        model: str | None,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read: int = 0,
        cache_write: int = 0,
        user_id: str | None = None,
    ) -> UsageRecord:
        """A :class:`~starpod_session.UsageRecord` of that usage, priced from this table."""
        return UsageRecord(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read=cache_read,
            cache_write=cache_write,
            cost_usd=self.cost(model, input_tokens, output_tokens, cache_read, cache_write),
            model=model,
            user_id=user_id,
        )


_NO_PRICES = PriceTable({})


def as_price_table(prices: PriceTable | Mapping[str, ModelPrice | Mapping[str, float]] | None) -> PriceTable:
    """``prices`` as a :class:`PriceTable`: a table as it is, a mapping converted, ``None`` an empty table."""
    if prices is None:
        return _NO_PRICES
    if isinstance(prices, PriceTable):
        return prices
    return PriceTable(prices)
