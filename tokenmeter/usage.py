"""Normalized token usage (`Usage`) and the value an agent step may return (`AgentTurn`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["AgentTurn", "Usage"]

T = TypeVar("T")

_TOKEN_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
_EMPTY: Mapping[str, int] = {}
_MAX_COUNT = 2**63 - 1


def _check_count(name: str, value: object) -> int:
    # bool is an int subclass, and True tokens is always a bug upstream.
    if type(value) is not int:
        raise TypeError(
            f"Usage.{name} must be a non-negative int, got {value!r} ({type(value).__name__}); "
            "convert provider counts with int() before building a Usage"
        )
    if value < 0:
        raise ValueError(f"Usage.{name} must be a non-negative int, got {value!r}")
    if value > _MAX_COUNT:
        raise ValueError(
            f"Usage.{name} is {value!r}, above the largest count SQL sinks store "
            f"({_MAX_COUNT}, a 64-bit integer)"
        )
    return value


class Usage:
    """Token counts of one or more LLM calls, in tokenmeter's normalized convention.

    The convention is the one genai-prices and the OpenTelemetry GenAI semantic conventions
    use: the totals contain their parts, whatever the provider reported.

    Args:
        input_tokens: Every prompt-side token billed, cache reads and cache writes included.
        cache_read_tokens: The part of `input_tokens` served from a prompt cache.
        cache_write_tokens: The part of `input_tokens` written to a prompt cache, all
            lifetimes together. `details["cache_write_1h_tokens"]` is the 1-hour part when
            the provider reports it, because it is priced apart from 5-minute writes.
        output_tokens: Every completion-side token, reasoning or thinking included.
        reasoning_tokens: The part of `output_tokens` spent on reasoning.
        details: Further billable counts kept beside the five fields, for pricing: for
            example `web_searches`, `input_audio_tokens`, `cache_write_1h_tokens`.
            Keys follow genai-prices' usage names where it has one.

    Raises:
        TypeError: if a count is not an `int`.
        ValueError: if a count is negative.

    `Usage` objects are immutable and add up with `+`, which sums every field and detail.
    """

    __slots__ = (
        "cache_read_tokens",
        "cache_write_tokens",
        "details",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
    )

    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    details: Mapping[str, int]

    def __init__(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        details: Mapping[str, int] | None = None,
    ) -> None:
        setter = object.__setattr__
        setter(self, "input_tokens", _check_count("input_tokens", input_tokens))
        setter(self, "output_tokens", _check_count("output_tokens", output_tokens))
        setter(self, "cache_read_tokens", _check_count("cache_read_tokens", cache_read_tokens))
        setter(self, "cache_write_tokens", _check_count("cache_write_tokens", cache_write_tokens))
        setter(self, "reasoning_tokens", _check_count("reasoning_tokens", reasoning_tokens))

        if details:
            checked = {key: _check_count(f"details[{key!r}]", v) for key, v in details.items()}
            setter(self, "details", checked)
        else:
            setter(self, "details", _EMPTY)

    @classmethod
    def _trusted(
        cls,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
        details: Mapping[str, int],
    ) -> Usage:
        # Skips validation: only for values that came out of validated Usage objects.
        usage = cls.__new__(cls)
        setter = object.__setattr__
        setter(usage, "input_tokens", input_tokens)
        setter(usage, "output_tokens", output_tokens)
        setter(usage, "cache_read_tokens", cache_read_tokens)
        setter(usage, "cache_write_tokens", cache_write_tokens)
        setter(usage, "reasoning_tokens", reasoning_tokens)
        setter(usage, "details", details)
        return usage

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Usage is immutable; build a new one instead of setting {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Usage is immutable; cannot delete {name!r}")

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented

        if not other.details:
            details = self.details
        elif not self.details:
            details = other.details
        else:
            merged = dict(self.details)
            for key, value in other.details.items():
                merged[key] = merged.get(key, 0) + value
            details = merged

        return Usage._trusted(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            details,
        )

    def __radd__(self, other: object) -> Usage:
        # Lets sum() start from its default 0.
        if other == 0:
            return self
        return NotImplemented

    @property
    def total_tokens(self) -> int:
        """Prompt side plus completion side: `input_tokens + output_tokens`."""
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, Any]:
        """Return the five token fields, and `details` when it is not empty, as a dict."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _TOKEN_FIELDS}
        if self.details:
            data["details"] = dict(self.details)
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Usage):
            return NotImplemented
        return (
            self.input_tokens == other.input_tokens
            and self.output_tokens == other.output_tokens
            and self.cache_read_tokens == other.cache_read_tokens
            and self.cache_write_tokens == other.cache_write_tokens
            and self.reasoning_tokens == other.reasoning_tokens
            and dict(self.details) == dict(other.details)
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.input_tokens,
                self.output_tokens,
                self.cache_read_tokens,
                self.cache_write_tokens,
                self.reasoning_tokens,
                frozenset(self.details.items()),
            )
        )

    def __repr__(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in _TOKEN_FIELDS if getattr(self, name)]
        if self.details:
            parts.append(f"details={dict(self.details)!r}")
        return f"Usage({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_usage, (self.as_dict(),))


def _rebuild_usage(data: dict[str, Any]) -> Usage:
    return Usage(**data)


Usage.__module__ = "tokenmeter"


@dataclass(frozen=True, slots=True)
class AgentTurn(Generic[T]):
    """The value an agent step may return so that `metered_turn` can read its usage.

    Args:
        output: The step's own result. tokenmeter does not unwrap it: callers read
            `turn.output`.
        usage: A `Usage`, a provider usage object or dict, or a whole provider response.
            `None` means the step made no billed call.
        model: The model that served the call, used for pricing. Overrides a model named in
            the response.
        provider: The provider id (`openai`, `anthropic`, ...) or an accepted alias.
        batch: Whether the call ran as a batch job, priced at batch prices.
    """

    output: T
    usage: Any = None
    model: str | None = None
    provider: str | None = None
    batch: bool = False


AgentTurn.__module__ = "tokenmeter"
