"""tokenmeter: meter what every LLM agent, turn and model costs.

Decorate agent steps with `metered_turn`, or wrap a tool-calling loop in `meter()`. tokenmeter
reads the token usage out of what the provider returned and prices each round with
genai-prices. A background thread delivers one `UsageRecord` per turn to the configured sinks.
"""

from tokenmeter._api import aflush, configure, flush, shutdown, stats
from tokenmeter.delivery import DeliveryStats, SinkStats, flush_on_signal
from tokenmeter.extract import extract_stream_usage, extract_usage
from tokenmeter.metering import Meter, meter, metered_turn
from tokenmeter.pricing import estimate_cost
from tokenmeter.reading import (
    iter_jsonl,
    read,
    read_jsonl,
    read_jsonl_df,
    read_postgres,
    read_sqlite,
    to_pandas,
    to_polars,
)
from tokenmeter.records import Cost, ModelUsage, UsageRecord
from tokenmeter.sinks import Sink, open_sink
from tokenmeter.streams import AsyncMeteredStream, MeteredStream, metered_stream
from tokenmeter.usage import AgentTurn, Usage

__version__ = "0.1.0"

__all__ = [
    "AgentTurn",
    "AsyncMeteredStream",
    "Cost",
    "DeliveryStats",
    "Meter",
    "MeteredStream",
    "ModelUsage",
    "Sink",
    "SinkStats",
    "Usage",
    "UsageRecord",
    "__version__",
    "aflush",
    "configure",
    "estimate_cost",
    "extract_stream_usage",
    "extract_usage",
    "flush",
    "flush_on_signal",
    "iter_jsonl",
    "meter",
    "metered_stream",
    "metered_turn",
    "open_sink",
    "read",
    "read_jsonl",
    "read_jsonl_df",
    "read_postgres",
    "read_sqlite",
    "shutdown",
    "stats",
    "to_pandas",
    "to_polars",
]
