"""Shared pieces of usage extraction: `Reading`, the two errors, field access, count checks."""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, cast

from tokenmeter.usage import Usage

__all__ = [
    "MalformedUsage",
    "Reading",
    "UnrecognizedResponse",
    "count",
    "field",
    "note_contradiction",
]

logger = logging.getLogger("tokenmeter.extract")


@dataclass(frozen=True, slots=True)
class Reading:
    """The billed usage, model and provider read from one provider response.

    Attributes:
        usage: The normalized usage, or `None` when the object reports no billed usage (an
            error body, `usage: null`, a token-count result). `None` means unknown, not zero.
        model: The model named in the response, if any.
        provider: The canonical provider id, when the caller named it or the shape shows it.
    """

    usage: Usage | None
    model: str | None
    provider: str | None


class UnrecognizedResponse(TypeError):
    """The object matches the shape of no supported provider response, usage or stream event."""


MAX_COUNT = 2**63 - 1
"""The largest token count accepted: SQL sinks store counts as 64-bit integers."""


class MalformedUsage(ValueError):
    """The object carries usage, but a count is negative or not an integer."""


Reading.__module__ = "tokenmeter.extract"
UnrecognizedResponse.__module__ = "tokenmeter.extract"
MalformedUsage.__module__ = "tokenmeter.extract"


_MAPPING, _PYDANTIC, _OBJECT = 0, 1, 2
_access_by_type: dict[type, int] = {dict: _MAPPING}
_MISSING = object()


def field(obj: Any, name: str) -> Any:
    """Return `obj[name]` for mappings and `obj.name` for objects, `None` when absent.

    Pydantic models are read from their instance `__dict__` and extras: a plain `getattr` of a
    missing name goes through pydantic's `__getattr__` and costs about a microsecond.
    """
    if obj is None:
        return None
    cls = type(obj)
    access = _access_by_type.get(cls)
    if access is None:
        access = _access_of(cls)
    if access == _MAPPING:
        return obj.get(name)
    if access == _PYDANTIC:
        value = obj.__dict__.get(name, _MISSING)
        if value is _MISSING:
            extra = obj.__pydantic_extra__
            return extra.get(name) if extra else None
        return value
    return getattr(obj, name, None)


class AttributeView:
    """Read-only `get()` over the attributes of an object that is neither a dict nor pydantic."""

    __slots__ = ("target",)

    def __init__(self, target: object) -> None:
        self.target = target

    def get(self, name: str, /) -> Any:
        return getattr(self.target, name, None)


class Fields(Protocol):
    """The read-only `get` of a mapping, as `view()` returns it."""

    def get(self, name: str, /) -> Any: ...


_NO_FIELDS: dict[str, Any] = {}


def view(obj: Any) -> Fields:
    """Return a `get()`-able view of a dict, a pydantic model or any object; `{}` for `None`.

    Normalizers read many fields of one object, and a dict `get` is the cheapest read there is,
    so a pydantic model is viewed through its instance `__dict__` (with its extras merged in).
    """
    if obj is None:
        return _NO_FIELDS
    cls = type(obj)
    access = _access_by_type.get(cls)
    if access is None:
        access = _access_of(cls)
    if access == _MAPPING:
        return cast(Fields, obj)
    if access == _PYDANTIC:
        extra = obj.__pydantic_extra__
        if extra:
            return {**obj.__dict__, **extra}
        return cast(Fields, obj.__dict__)
    return AttributeView(obj)


def _access_of(cls: type) -> int:
    if issubclass(cls, Mapping):
        access = _MAPPING
    elif hasattr(cls, "__pydantic_extra__") and hasattr(cls, "model_fields"):
        access = _PYDANTIC
    else:
        access = _OBJECT
    if len(_access_by_type) < 4096:
        _access_by_type[cls] = access
    return access


def count(value: Any, name: str) -> int:
    """Convert one reported count to an `int`, treating a missing value as 0.

    Integral floats (`12.0`) and decimal strings (protobuf JSON renders int64 as `"12"`) are
    accepted because real serializers produce them.

    Raises:
        MalformedUsage: if the value is negative, fractional, a bool, or not a number.
    """
    if type(value) is int:
        if value < 0:
            raise MalformedUsage(f"usage field {name!r} is negative: {value!r}")
        if value > MAX_COUNT:
            raise MalformedUsage(
                f"usage field {name!r} is {value!r}, above the largest count stored "
                f"({MAX_COUNT}, a 64-bit SQL integer)"
            )
        return value
    if value is None:
        return 0
    if isinstance(value, bool):
        raise MalformedUsage(f"usage field {name!r} must be a non-negative integer, got {value!r}")
    if isinstance(value, float):
        if value.is_integer():
            return count(int(value), name)
    elif isinstance(value, str):
        if value.isdigit():
            return count(int(value), name)
    else:
        try:
            # int subclasses and other integral types, such as numpy.int64.
            return count(operator.index(value), name)
        except TypeError:
            pass
    raise MalformedUsage(f"usage field {name!r} must be a non-negative integer, got {value!r}")


def reported_usd(value: Any) -> Decimal | None:
    """Convert a cost a provider reported in USD to a `Decimal` with the digits it was sent with.

    A JSON number parsed as a float comes back as the shortest decimal that reads back as that
    float, which is the text the provider sent whenever it sent at most 17 significant digits.
    Returns `None` for a missing, negative or non-numeric value: a cost that cannot be read is
    not reported.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return amount


def count_at(fields: Fields, name: str) -> int:
    """Return the count stored under `name` in a `view()` (0 when missing)."""
    value = fields.get(name)
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    return count(value, name)


contradictions_logged: set[tuple[str, str]] = set()


def note_contradiction(provider: str, kind: str, message: str) -> None:
    """Log, once per provider and kind, that reported counts contradict each other.

    The counts are kept as reported: clamping would hide a provider bug in the bill, and
    raising would lose a response that was billed.
    """
    key = (provider, kind)
    if key in contradictions_logged:
        return
    contradictions_logged.add(key)
    logger.warning(
        "%s reported contradictory usage (%s): %s; counts are kept as reported "
        "(further cases of this kind are not logged)",
        provider,
        kind,
        message,
    )


def add_detail(details: dict[str, int], key: str, value: int) -> None:
    """Add a nonzero count to `details` under `key`."""
    if value:
        details[key] = details.get(key, 0) + value


def counts_at(fields: Fields, names: tuple[str, ...]) -> list[int]:
    """Return the counts stored under each of `names` (0 when missing), in order."""
    values = []
    for name in names:
        value = fields.get(name)
        if type(value) is not int or value < 0:
            value = count(value, name)
        values.append(value)
    return values


def copy_counts(
    fields: Fields, names: tuple[tuple[str, str], ...], details: dict[str, int]
) -> None:
    """Add each nonzero count `fields[source]` to `details[target]` for `(source, target)`."""
    for source, target in names:
        value = fields.get(source)
        if value:
            details[target] = details.get(target, 0) + count(value, source)


def modality_details(
    entries: Any, prefix_by_modality: Mapping[str, str], details: dict[str, int]
) -> None:
    """Add per-modality token counts from a Gemini-style `[{modality, tokenCount}]` list."""
    if not entries:
        return
    for entry in entries:
        modality = field(entry, "modality")
        modality = getattr(modality, "value", modality)
        key = prefix_by_modality.get(str(modality).upper()) if modality is not None else None
        if key is None:
            continue
        tokens = field(entry, "tokenCount")
        if tokens is None:
            tokens = field(entry, "token_count")
        add_detail(details, key, count(tokens, f"{key}.tokenCount"))


def make_usage(
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    details: dict[str, int] | None = None,
) -> Usage:
    """Build a `Usage` from counts that already went through `count()`.

    Skips the constructor's checks, which would repeat `count()`'s and double the cost of
    reading a response. Only the upper bound is checked again, because totals add counts.
    """
    if max(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens) > MAX_COUNT:
        raise MalformedUsage(
            f"usage totals exceed the largest count stored ({MAX_COUNT}, a 64-bit SQL "
            f"integer): input {input_tokens}, output {output_tokens}"
        )
    return Usage._trusted(
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        reasoning_tokens,
        details or _NO_DETAILS,
    )


_NO_DETAILS: Mapping[str, int] = {}
