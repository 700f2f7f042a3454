"""Functions written out per statement and per record class, as attrs writes its own ``__init__``.

A prepared statement turns the caller's values into the driver's parameters, and
the driver's rows into tuples or attrs records, with the column types' processing,
millions of times: a loop over columns or parameters at run time, or attrs' own
``__init__`` (an ``object.__setattr__`` per field of a frozen class), costs more
than SQLite's look-up. So each function is generated once, with the processors as
its globals, and compiled with ``exec``: the only code generation in the library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import attrs

__all__ = ["Processor", "parameters_maker", "record_maker", "row_maker"]

Processor = Callable[[Any], Any]
#: An attrs record class a statement's rows become.
Record = TypeVar("Record")


def _generated(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    """The function ``name`` that ``lines`` define, with ``namespace`` as its globals.

    The per-statement and per-record functions are written out as attrs writes
    its own ``__init__``: no loop over columns or parameters at run time.
    """
    exec("\n".join(lines), namespace)
    return namespace[name]


def parameters_maker(
    binds: tuple[tuple[str | None, Any, Processor | None], ...], names: tuple[str, ...] | None
) -> Callable[[dict[str, Any]], Sequence[Any] | dict[str, Any]]:
    """A function turning the caller's values into the driver's parameters: a list, or a dict by ``names``."""
    namespace: dict[str, Any] = {}
    items = []
    for index, (key, literal, process) in enumerate(binds):
        if key is None:
            namespace[f"literal_{index}"] = literal
            value = f"literal_{index}"
        else:
            value = f"values[{key!r}]"
        if process is not None:
            namespace[f"process_{index}"] = process
            value = f"process_{index}({value})"
        items.append(value if names is None else f"{names[index]!r}: {value}")
    body = f"[{', '.join(items)}]" if names is None else f"{{{', '.join(items)}}}"
    parameters: Callable[[dict[str, Any]], Sequence[Any] | dict[str, Any]] = _generated(
        "parameters", ["def parameters(values):", f"    return {body}"], namespace
    )
    return parameters


def row_maker(processors: dict[int, Processor], width: int) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A function making a tuple of a result row of ``width`` columns, with the columns' result processing."""
    if not processors:
        return tuple
    namespace: dict[str, Any] = {f"process_{index}": processor for index, processor in processors.items()}
    items = [f"process_{index}(row[{index}])" if index in processors else f"row[{index}]" for index in range(width)]
    make: Callable[[Sequence[Any]], tuple[Any, ...]] = _generated(
        "make", ["def make(row):", f"    return ({', '.join(items)},)"], namespace
    )
    return make


def record_maker(record: type[Record], processors: dict[int, Processor]) -> Callable[[Sequence[Any]], Record]:
    """A function making a ``record`` of one result row, with the columns' result processing.

    It stores each field straight into its slot: the same instance ``record(*row)``
    makes, in half the time (attrs' ``__init__`` of a frozen class calls
    ``object.__setattr__`` once per field), and without the intermediate list and
    tuple of :func:`_process`. Written out per class as attrs writes its own
    ``__init__``; only for classes whose ``__init__`` does nothing else.
    """
    fields = attrs.fields(cast("type[attrs.AttrsInstance]", record))
    assert "__attrs_post_init__" not in vars(record) and all(
        field.validator is None and field.converter is None and field.init for field in fields
    ), f"{record.__name__} has an __init__ that must run"
    namespace: dict[str, Any] = {"new": object.__new__, "record": record}
    lines = ["def make(row):", "    made = new(record)"]
    for index, field in enumerate(fields):
        namespace[f"set_{index}"] = vars(record)[field.name].__set__  # the slot's descriptor
        value = f"row[{index}]"
        if index in processors:
            namespace[f"process_{index}"] = processors[index]
            value = f"process_{index}({value})"
        lines.append(f"    set_{index}(made, {value})")
    lines.append("    return made")
    maker: Callable[[Sequence[Any]], Record] = _generated("make", lines, namespace)
    return maker
