"""PostgreSQL sink: stores usage records in a table, idempotently by record id, through asyncpg."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from json.encoder import encode_basestring
from types import ModuleType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from tokenmeter.records import ModelUsage, Repricing, RoundUsage, UsageRecord
from tokenmeter.sinks.urls import DEFAULT_TABLE, mask_url, parse_table_options, validate_identifier

__all__ = ["SCHEMA_VERSION_TABLE", "TABLE_VERSION", "PostgresSink", "record_from_row"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION_TABLE: Final = "tokenmeter_schema_version"
"""Table, in the sink's schema, that lists the migrations applied to each tokenmeter table."""

_SCHEMES = ("postgresql", "postgres")
_URL_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE?table=TABLE&schema=SCHEMA"
_MASK = "***"
_STAGING_TABLE = "tokenmeter_staging"

# (column, PostgreSQL type) in the order `_record_row` produces values. Each is a field of
# UsageRecord under the same name.
_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("id", "uuid"),
    ("timestamp", "timestamptz"),
    ("duration_ms", "double precision"),
    ("run_id", "uuid"),
    ("parent_id", "uuid"),
    ("agent", "text"),
    ("name", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("status", "text"),
    ("error_type", "text"),
    ("rounds", "integer"),
    ("unmeasured_rounds", "integer"),
    ("input_tokens", "bigint"),
    ("cache_read_tokens", "bigint"),
    ("cache_write_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("reasoning_tokens", "bigint"),
    ("cost_usd", "numeric"),
    ("price_status", "text"),
    ("price_source", "text"),
    ("details", "jsonb"),
    ("by_model", "jsonb"),
    ("tags", "jsonb"),
    ("metadata", "jsonb"),
    ("schema_version", "integer"),
    # Added by migration 2.
    ("input_cost_usd", "numeric"),
    ("cache_read_cost_usd", "numeric"),
    ("cache_write_cost_usd", "numeric"),
    ("output_cost_usd", "numeric"),
    ("other_cost_usd", "numeric"),
    ("priced_at", "timestamptz"),
    ("reported_cost_usd", "numeric"),
    ("rounds_usage", "jsonb"),
    ("repriced_cost_usd", "numeric"),
    ("repriced_at", "timestamptz"),
    ("repriced_source", "text"),
)
_COLUMN_NAMES: Final = tuple(name for name, _ in _COLUMNS)
_CREATE_STAGING_SQL: Final = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING_TABLE} ("
    + ", ".join(f'"{name}" {sql_type}' for name, sql_type in _COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
_JSON_COLUMNS: Final = frozenset(name for name, sql_type in _COLUMNS if sql_type == "jsonb")


def _quote(identifier: str) -> str:
    # Only identifiers that passed `validate_identifier` get here, so they contain no quote.
    return f'"{identifier}"'


def _index_name(table: str, suffix: str) -> str:
    """Name an index `{table}_{suffix}`, shortened with a hash when that exceeds 63 bytes.

    PostgreSQL truncates longer names silently, so two long names could collide.
    """
    name = f"{table}_{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    return f"{table[: 63 - len(suffix) - 10]}_{digest}_{suffix}"


# --- URLs ----------------------------------------------------------------------------------


def _passwords_in(url: str) -> list[str]:
    """Return the URL's password as written and percent-decoded, to scrub it from messages."""
    try:
        parts = urlsplit(url)
        candidates = [parts.password or ""]
    except ValueError:
        candidates = []
    candidates += [
        value for key, value in parse_qsl(url.partition("?")[2]) if "password" in key.lower()
    ]
    found = {candidate for candidate in candidates if candidate}
    found |= {unquote(candidate) for candidate in found}
    # Longest first, so that a password containing another is replaced whole.
    return sorted(found, key=len, reverse=True)


# --- rows ------------------------------------------------------------------------------------
#
# The JSON encoders below run for every record of every batch, and json.dumps costs a few
# microseconds even for a two-item dict, so the fields of known shape are written by hand.

# json.dumps can only write a Decimal as a string or a float. Each Decimal goes out as a marked
# string and the marks are removed after, so jsonb stores it as a number with its exact digits.
_DECIMAL_MARK = "\x00tokenmeter-decimal:"
_ESCAPED_DECIMAL_MARK = "\\u0000tokenmeter-decimal:"
_MARKED_DECIMAL = re.compile(r'"\\u0000tokenmeter-decimal:([^"]+)"')


def _encode_other(item: object) -> object:
    if isinstance(item, Decimal) and item.is_finite():
        return _DECIMAL_MARK + str(item)
    return str(item)


_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_encode_other)


def _any_json(value: Any) -> str:
    """Encode any JSON-like value; Decimals become exact numbers, unknown types strings."""
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    text = _JSON_ENCODER.encode(value)
    if _ESCAPED_DECIMAL_MARK in text:
        text = _MARKED_DECIMAL.sub(r"\1", text)
    return text


def _str_json(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def _decimal_json(value: Decimal | None) -> str:
    if value is None:
        return "null"
    if value.is_finite():
        return str(value)  # exponent forms such as 1.5E-7 are valid JSON numbers
    return f'"{value}"'  # JSON has no NaN or Infinity


def _counts_json(counts: Mapping[str, int]) -> str:
    if not counts:
        return "{}"
    return (
        "{"
        + ",".join([f"{encode_basestring(key)}:{value:d}" for key, value in counts.items()])
        + "}"
    )


def _strings_json(values: Mapping[str, str]) -> str:
    if not values:
        return "{}"
    return (
        "{"
        + ",".join(
            [
                f"{encode_basestring(key)}:{encode_basestring(value)}"
                for key, value in values.items()
            ]
        )
        + "}"
    )


def _tags_json(tags: Sequence[str]) -> str:
    if not tags:
        return "[]"
    return "[" + ",".join([encode_basestring(tag) for tag in tags]) + "]"


def _model_usage_json(usage: ModelUsage) -> str:
    # Every field of ModelUsage, in declaration order; a test checks that none is missing.
    return (
        f'{{"model":{_str_json(usage.model)},"provider":{_str_json(usage.provider)},'
        f'"rounds":{usage.rounds:d},"input_tokens":{usage.input_tokens:d},'
        f'"cache_read_tokens":{usage.cache_read_tokens:d},'
        f'"cache_write_tokens":{usage.cache_write_tokens:d},'
        f'"output_tokens":{usage.output_tokens:d},"reasoning_tokens":{usage.reasoning_tokens:d},'
        f'"details":{_counts_json(usage.details)},"cost_usd":{_decimal_json(usage.cost_usd)}}}'
    )


def _by_model_json(by_model: Sequence[ModelUsage]) -> str:
    if not by_model:
        return "[]"
    return "[" + ",".join([_model_usage_json(usage) for usage in by_model]) + "]"


def _round_usage_json(usage: RoundUsage) -> str:
    # Every field of RoundUsage, in declaration order; a test checks that none is missing.
    return (
        f'{{"model":{_str_json(usage.model)},"provider":{_str_json(usage.provider)},'
        f'"input_tokens":{usage.input_tokens:d},'
        f'"cache_read_tokens":{usage.cache_read_tokens:d},'
        f'"cache_write_tokens":{usage.cache_write_tokens:d},'
        f'"output_tokens":{usage.output_tokens:d},"reasoning_tokens":{usage.reasoning_tokens:d},'
        f'"details":{_counts_json(usage.details)},'
        f'"price_context":{_strings_json(usage.price_context)}}}'
    )


def _rounds_usage_json(rounds_usage: Sequence[RoundUsage] | None) -> str | None:
    if rounds_usage is None:
        return None
    return "[" + ",".join([_round_usage_json(usage) for usage in rounds_usage]) + "]"


def _record_row(record: UsageRecord) -> tuple[Any, ...]:
    """Return the record's column values in `_COLUMNS` order, as asyncpg's COPY takes them."""
    return (
        record.id,
        record.timestamp,
        record.duration_ms,
        record.run_id,
        record.parent_id,
        record.agent,
        record.name,
        record.model,
        record.provider,
        record.status,
        record.error_type,
        record.rounds,
        record.unmeasured_rounds,
        record.input_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.output_tokens,
        record.reasoning_tokens,
        record.cost_usd,
        record.price_status,
        record.price_source,
        _counts_json(record.details),
        _by_model_json(record.by_model),
        _tags_json(record.tags),
        _any_json(record.metadata),
        record.schema_version,
        record.input_cost_usd,
        record.cache_read_cost_usd,
        record.cache_write_cost_usd,
        record.output_cost_usd,
        record.other_cost_usd,
        record.priced_at,
        record.reported_cost_usd,
        _rounds_usage_json(record.rounds_usage),
        record.repriced_cost_usd,
        record.repriced_at,
        record.repriced_source,
    )


def record_from_row(row: Mapping[str, Any]) -> UsageRecord:
    """Build a `UsageRecord` from a row of the sink's table, as asyncpg returns it.

    JSON numbers with a fraction come back as `Decimal` (so costs in `by_model` stay exact),
    and columns that are not record fields are ignored.

    Raises:
        pydantic.ValidationError: if the row does not hold a valid record.
    """
    data: dict[str, Any] = {}
    for name in _COLUMN_NAMES:
        if name not in row:
            continue
        value = row[name]
        if name in _JSON_COLUMNS and isinstance(value, str):
            value = json.loads(value, parse_float=Decimal)
        data[name] = value
    return UsageRecord.model_validate(data)


# --- schema ----------------------------------------------------------------------------------


def _migration_1(schema: str, table: str) -> list[str]:
    """Create the table and its indexes by time, (agent, time) and (model, time)."""
    qualified = f"{_quote(schema)}.{_quote(table)}"
    return [
        f"""
        CREATE TABLE IF NOT EXISTS {qualified} (
            "id" uuid PRIMARY KEY,
            "timestamp" timestamptz NOT NULL,
            "duration_ms" double precision,
            "run_id" uuid NOT NULL,
            "parent_id" uuid,
            "agent" text,
            "name" text,
            "model" text,
            "provider" text,
            "status" text NOT NULL,
            "error_type" text,
            "rounds" integer NOT NULL,
            "unmeasured_rounds" integer NOT NULL,
            "input_tokens" bigint,
            "cache_read_tokens" bigint,
            "cache_write_tokens" bigint,
            "output_tokens" bigint,
            "reasoning_tokens" bigint,
            "cost_usd" numeric,
            "price_status" text NOT NULL,
            "price_source" text,
            "details" jsonb NOT NULL,
            "by_model" jsonb NOT NULL,
            "tags" jsonb NOT NULL,
            "metadata" jsonb NOT NULL,
            "schema_version" integer NOT NULL
        )
        """,
        f"CREATE INDEX IF NOT EXISTS {_quote(_index_name(table, 'timestamp_idx'))} "
        f'ON {qualified} ("timestamp")',
        f"CREATE INDEX IF NOT EXISTS {_quote(_index_name(table, 'agent_timestamp_idx'))} "
        f'ON {qualified} ("agent", "timestamp")',
        f"CREATE INDEX IF NOT EXISTS {_quote(_index_name(table, 'model_timestamp_idx'))} "
        f'ON {qualified} ("model", "timestamp")',
    ]


def _migration_2(schema: str, table: str) -> list[str]:
    """Add the cost components, provenance, reported cost, per-round usage and re-pricing.

    Every added column allows NULL, which is what rows written before it read back as.
    """
    qualified = f"{_quote(schema)}.{_quote(table)}"
    added = [(name, sql_type) for name, sql_type in _COLUMNS if name in _VERSION_2_COLUMNS]
    return [
        f"ALTER TABLE {qualified} "
        + ", ".join(
            f"ADD COLUMN IF NOT EXISTS {_quote(name)} {sql_type}" for name, sql_type in added
        )
    ]


_VERSION_2_COLUMNS: Final = (
    "input_cost_usd",
    "cache_read_cost_usd",
    "cache_write_cost_usd",
    "output_cost_usd",
    "other_cost_usd",
    "priced_at",
    "reported_cost_usd",
    "rounds_usage",
    "repriced_cost_usd",
    "repriced_at",
    "repriced_source",
)

# Forward migrations by the table version they produce. Applied in order, each once, and
# never edited after release: a later change to the table is a new entry.
_MIGRATIONS: Final = {1: _migration_1, 2: _migration_2}
TABLE_VERSION: Final = max(_MIGRATIONS)
"""The version of the table layout this tokenmeter writes; `tokenmeter_schema_version` stores it."""


def _advisory_lock_key(schema: str) -> int:
    # One lock per schema, because every table of a schema shares its version table.
    digest = hashlib.sha256(f"tokenmeter:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _import_asyncpg() -> ModuleType:
    try:
        import asyncpg
    except ImportError as error:
        raise ImportError(
            "the PostgreSQL sink needs asyncpg, which is not installed: "
            "pip install 'tokenmeter[postgres]'"
        ) from error
    module: ModuleType = asyncpg
    return module


# --- the sink --------------------------------------------------------------------------------


class PostgresSink:
    """Store usage records in a PostgreSQL table, one transaction per batch, once per id.

    The table (`llm_usage` by default) and its schema version table are created on the first
    write when missing. Forward migrations run once, under a transaction-level advisory lock,
    so many processes may start against a fresh database at once.

    Each batch is copied into the table with one binary COPY, which stores all of it or none.
    If an id of the batch is stored already, for example because a retry follows a lost
    acknowledgement, that COPY fails whole, and the batch goes through a temporary table and
    `INSERT ... ON CONFLICT (id) DO NOTHING` instead. So each record is stored once.

    The asyncpg pool is created on the first write, on the running event loop. A connection
    error resets it and propagates, and the next write connects anew; retrying is the caller's
    job (tokenmeter's delivery thread retries with backoff).

    Args:
        url: `postgresql://user:password@host:port/database`, or `postgres://`. Its `table`
            and `schema` query parameters override the keyword arguments; the other query
            parameters (`sslmode`, `host` for a unix socket...) go to asyncpg.
        table: The table to write, a plain SQL identifier.
        schema: The schema of the table, created when missing; `None` uses the first schema
            of the connection's `search_path`, usually `public`.
        pool_min: Connections the pool opens at once and keeps.
        pool_max: Maximum connections the pool opens.
        connect_timeout_s: Seconds to wait for a new connection.
        command_timeout_s: Seconds to wait for each statement, `None` for no limit.

    Raises:
        ValueError: if the URL, table, schema or a pool size is invalid.
        ImportError: if asyncpg is not installed.
    """

    # The benchmark sets this to measure the path through the temporary table alone.
    _copy_first_disabled = False

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        pool_min: int = 1,
        pool_max: int = 4,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float | None = 60.0,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"PostgresSink url must be a str, got {type(url).__name__}")
        if url.partition("://")[0].lower() not in _SCHEMES:
            raise ValueError(
                f"invalid PostgreSQL sink URL {mask_url(url)!r}: expected {_URL_FORM} "
                "(the scheme may also be postgres://)"
            )
        options = parse_table_options(url)
        # parse_table_options reports a missing `table` as the default name.
        url_table = None if options.table == DEFAULT_TABLE else options.table
        if url_table is not None and table not in (DEFAULT_TABLE, url_table):
            raise ValueError(
                f"PostgresSink got table={table!r} and table={url_table!r} in the URL "
                f"{mask_url(url)!r}; give it once"
            )
        if options.schema is not None and schema not in (None, options.schema):
            raise ValueError(
                f"PostgresSink got schema={schema!r} and schema={options.schema!r} in the URL "
                f"{mask_url(url)!r}; give it once"
            )
        table = validate_identifier("table", url_table if url_table is not None else table)
        if table == SCHEMA_VERSION_TABLE:
            raise ValueError(
                f"invalid table={table!r}: tokenmeter keeps its schema versions in a table of "
                "that name; choose another name"
            )
        schema = options.schema if options.schema is not None else schema
        if schema is not None:
            validate_identifier("schema", schema)
            if schema.lower().startswith("pg_"):
                raise ValueError(
                    f"invalid schema={schema!r}: PostgreSQL reserves names starting with "
                    "'pg_' for the system; choose another name"
                )
        if type(pool_min) is not int or pool_min < 0:
            raise ValueError(f"invalid pool_min {pool_min!r}: expected an int >= 0")
        if type(pool_max) is not int or pool_max < max(pool_min, 1):
            raise ValueError(
                f"invalid pool_max {pool_max!r}: expected an int >= 1 and >= pool_min ({pool_min})"
            )

        self._asyncpg = _import_asyncpg()
        self._dsn = options.url
        self._masked_url = mask_url(options.url)
        self._passwords = _passwords_in(options.url)
        self.table = table
        self.schema = schema
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s

        self._pool: Any = None
        self._pool_pid = os.getpid()
        self._inherited_pools: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._resolved_schema: str | None = None
        self._insert_sql = ""
        self._expect_duplicates = self._copy_first_disabled
        self._failing = False
        self._closed = False

    @property
    def url(self) -> str:
        """The sink's URL with its password masked, safe to log and to key the spool by."""
        return self._masked_url

    def __repr__(self) -> str:
        return f"PostgresSink({self._masked_url!r}, table={self.table!r}, schema={self.schema!r})"

    # -- connections --

    async def _ready_pool(self) -> Any:
        """Return the pool, creating it and migrating the table on the first call per loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            # asyncpg pools and asyncio locks belong to the loop that made them.
            self._leave_pool()
            self._loop = loop
            self._lock = asyncio.Lock()
        if self._pool is not None:
            return self._pool

        async with self._lock:
            if self._pool is None:
                self._pool = await self._create_pool()
                self._pool_pid = os.getpid()
        return self._pool

    async def _create_pool(self) -> Any:
        started = time.perf_counter()
        pool = await self._asyncpg.create_pool(
            self._dsn,
            min_size=self._pool_min,
            max_size=self._pool_max,
            timeout=self._connect_timeout_s,
            command_timeout=self._command_timeout_s,
        )
        try:
            if self._resolved_schema is None:
                async with pool.acquire() as connection:
                    await self._migrate(connection)
        except BaseException:
            pool.terminate()
            raise

        logger.info(
            "PostgreSQL sink connected to %s, table %s.%s, pool of %d to %d connections, "
            "in %.1f ms",
            self._masked_url,
            self._resolved_schema,
            self.table,
            self._pool_min,
            self._pool_max,
            (time.perf_counter() - started) * 1000,
        )
        return pool

    def _discard_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # terminate() closes the sockets at once; close() would wait on a dead server.
            pool.terminate()

    def _leave_pool(self) -> None:
        """Drop the pool of an event loop other than the running one, without using that loop.

        asyncpg can close a pool only on its own loop. A running loop in another thread gets
        the job handed over. A forked child keeps the parent's pool untouched, because its
        sockets and its loop's selector are shared with the parent, and closing them here
        could cut the parent's connections. Otherwise, with the loop closed, the garbage
        collector closes the sockets; asyncpg warns about each one with a ResourceWarning,
        which Python hides by default.
        """
        pool, self._pool = self._pool, None
        old_loop = self._loop
        if pool is None or old_loop is None:
            return

        if self._pool_pid != os.getpid():
            self._inherited_pools.append(pool)
            reason = "this process is a fork of the one that opened them"
        elif old_loop.is_running():
            old_loop.call_soon_threadsafe(pool.terminate)
            reason = "their event loop runs in another thread"
        else:
            reason = "their event loop has stopped"
        logger.warning(
            "PostgreSQL sink %s moves to a new event loop and leaves its connections "
            "behind (%s); call aclose() on the old loop first to close them cleanly",
            self._masked_url,
            reason,
        )

    def _is_connection_error(self, error: BaseException) -> bool:
        exceptions = self._asyncpg.exceptions
        return isinstance(
            error,
            OSError  # refused, reset, timed out
            | self._asyncpg.InterfaceError  # connection closed under asyncpg
            | exceptions.PostgresConnectionError  # SQLSTATE class 08
            | exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
        )

    def _hide_password(self, error: Exception) -> Exception:
        """Return `error`, or a RuntimeError with its message masked if it shows a password."""
        message = str(error)
        if not any(password in message for password in self._passwords):
            return error
        for password in self._passwords:
            message = message.replace(password, _MASK)
        return RuntimeError(f"{type(error).__name__}: {message}")

    # -- schema --

    async def _migrate(self, connection: Any) -> None:
        """Bring the table to `TABLE_VERSION`, taking the schema's advisory lock if needed."""
        schema = self.schema
        if schema is None:
            schema = await connection.fetchval("SELECT current_schema()")
            if schema is None:
                raise RuntimeError(
                    "PostgreSQL sink found no schema to create its table in: the connection's "
                    "search_path names no existing schema; add ?schema=NAME to the url"
                )
        qualified_version_table = f"{_quote(schema)}.{_quote(SCHEMA_VERSION_TABLE)}"

        # Fast path without a lock: a migrated table needs no DDL, so no CREATE privilege.
        version = await self._table_version(connection, schema, qualified_version_table)
        if version is None or version < TABLE_VERSION:
            async with connection.transaction():
                await connection.execute(
                    "SELECT pg_advisory_xact_lock($1)", _advisory_lock_key(schema)
                )
                await self._apply_migrations(connection, schema, qualified_version_table)
        elif version > TABLE_VERSION:
            logger.warning(
                "PostgreSQL table %s.%s is at version %d, newer than the version %d this "
                "tokenmeter writes; writing the columns it knows",
                schema,
                self.table,
                version,
                TABLE_VERSION,
            )

        self._resolved_schema = schema
        qualified_table = f"{_quote(schema)}.{_quote(self.table)}"
        columns = ", ".join(_quote(name) for name in _COLUMN_NAMES)
        self._insert_sql = (
            f"INSERT INTO {qualified_table} ({columns}) "
            f"SELECT {columns} FROM pg_temp.{_STAGING_TABLE} "
            'ON CONFLICT ("id") DO NOTHING'
        )

    async def _table_version(
        self, connection: Any, schema: str, qualified_version_table: str
    ) -> int | None:
        exists = await connection.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", qualified_version_table
        )
        if not exists:
            return None
        version: int | None = await connection.fetchval(
            f"SELECT max(version) FROM {qualified_version_table} WHERE table_name = $1",
            self.table,
        )
        return version

    async def _apply_migrations(
        self, connection: Any, schema: str, qualified_version_table: str
    ) -> None:
        """Apply the missing migrations; the caller holds the schema's advisory lock."""
        started = time.perf_counter()
        schema_exists = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
        )
        if not schema_exists:
            await connection.execute(f"CREATE SCHEMA {_quote(schema)}")
        await connection.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {qualified_version_table} (
                table_name text NOT NULL,
                version integer NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (table_name, version)
            )
            """
        )

        # Read again under the lock: another process may have migrated meanwhile.
        current = await self._table_version(connection, schema, qualified_version_table) or 0
        for version in sorted(_MIGRATIONS):
            if version <= current:
                continue
            for statement in _MIGRATIONS[version](schema, self.table):
                await connection.execute(statement)
            await connection.execute(
                f"INSERT INTO {qualified_version_table} (table_name, version) VALUES ($1, $2)",
                self.table,
                version,
            )
        if current < TABLE_VERSION:
            logger.info(
                "PostgreSQL table %s.%s migrated from version %d to %d in %.1f ms",
                schema,
                self.table,
                current,
                TABLE_VERSION,
                (time.perf_counter() - started) * 1000,
            )

    # -- the Sink protocol --

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Insert the batch in one transaction, skipping records whose id is already stored.

        Raises:
            RuntimeError: if the sink is closed.
            OSError, asyncpg.PostgresError, asyncpg.InterfaceError: if the batch could not be
                stored; then none of it is. After a connection error the pool is reset, and
                the next write connects anew.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; write() is not allowed after aclose()")
        if not records:
            return

        started = time.perf_counter()
        try:
            pool = await self._ready_pool()
            async with pool.acquire() as connection:
                inserted = await self._insert(connection, records)
        except Exception as error:
            self._note_failure(error)
            hidden = self._hide_password(error)
            if hidden is error:
                raise
            raise hidden from None

        if self._failing:
            self._failing = False
            logger.info("PostgreSQL sink writes to %s again", self._masked_url)
        logger.debug(
            "PostgreSQL sink stored %d of %d records (%d duplicate ids skipped) in %.1f ms",
            inserted,
            len(records),
            len(records) - inserted,
            (time.perf_counter() - started) * 1000,
        )

    async def _insert(self, connection: Any, records: Sequence[UsageRecord]) -> int:
        """Insert the records atomically and return how many were new.

        The fast path copies the batch straight into the table. If an id in it is stored
        already (a retry after a lost acknowledgement, or a record twice in one batch), that
        COPY fails whole and leaves nothing. Then the batch is copied into the connection's
        temporary table and moved with `INSERT ... ON CONFLICT (id) DO NOTHING`, which skips
        the stored ids. After such a batch the next one takes that path first, because
        replays tend to come in runs.
        """
        if not self._expect_duplicates:
            try:
                # One COPY is one statement, so it commits or fails whole without BEGIN
                # and COMMIT, which would cost two more round trips per batch.
                await connection.copy_records_to_table(
                    self.table,
                    schema_name=self._resolved_schema,
                    records=map(_record_row, records),
                    columns=_COLUMN_NAMES,
                    timeout=self._command_timeout_s,
                )
                return len(records)
            except self._asyncpg.UniqueViolationError:
                pass

        async with connection.transaction():
            # The temporary table lives as long as the connection and is emptied at each
            # commit. IF NOT EXISTS also recreates it after a DISCARD ALL.
            await connection.execute(_CREATE_STAGING_SQL)
            await connection.copy_records_to_table(
                _STAGING_TABLE,
                schema_name="pg_temp",
                records=map(_record_row, records),
                columns=_COLUMN_NAMES,
                timeout=self._command_timeout_s,
            )
            status = await connection.execute(self._insert_sql)
        inserted = int(status.rsplit(" ", 1)[-1])
        self._expect_duplicates = self._copy_first_disabled or inserted < len(records)
        return inserted

    async def store_repricing(self, repricings: Sequence[Repricing]) -> int:
        """Set the `repriced_*` columns of stored records, by id, in one transaction.

        Creates or migrates the table first, like `write`. Other columns stay as they are.

        Returns:
            How many rows were updated; ids not in the table are skipped.

        Raises:
            RuntimeError: if the sink is closed.
            OSError, asyncpg.PostgresError, asyncpg.InterfaceError: if the update failed;
                then nothing is updated.
        """
        if self._closed:
            raise RuntimeError(
                f"{self!r} is closed; store_repricing() is not allowed after aclose()"
            )
        if not repricings:
            return 0

        try:
            pool = await self._ready_pool()
            qualified = f"{_quote(self._resolved_schema or '')}.{_quote(self.table)}"
            async with pool.acquire() as connection, connection.transaction():
                # A temporary table and one UPDATE ... FROM cost two round trips for any
                # number of records, where executemany costs one statement per record.
                await connection.execute(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS tokenmeter_repricing ("
                    '"id" uuid, "cost" numeric, "at" timestamptz, "source" text'
                    ") ON COMMIT DELETE ROWS"
                )
                await connection.copy_records_to_table(
                    "tokenmeter_repricing",
                    schema_name="pg_temp",
                    records=[tuple(item) for item in repricings],
                    columns=("id", "cost", "at", "source"),
                    timeout=self._command_timeout_s,
                )
                status = await connection.execute(
                    f'UPDATE {qualified} AS stored SET "repriced_cost_usd" = new."cost", '
                    '"repriced_at" = new."at", "repriced_source" = new."source" '
                    'FROM pg_temp.tokenmeter_repricing AS new WHERE stored."id" = new."id"'
                )
        except Exception as error:
            self._note_failure(error)
            hidden = self._hide_password(error)
            if hidden is error:
                raise
            raise hidden from None
        updated = int(status.rsplit(" ", 1)[-1])
        logger.info(
            "PostgreSQL sink stored re-priced costs of %d records in %s.%s",
            updated,
            self._resolved_schema,
            self.table,
        )
        return updated

    def _note_failure(self, error: Exception) -> None:
        if not self._is_connection_error(error):
            return
        self._discard_pool()
        # One warning per outage: the delivery thread retries and logs each attempt itself.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        logger.log(
            level,
            "PostgreSQL connection to %s failed (%s: %s); the pool is reset and the next "
            "write reconnects",
            self._masked_url,
            type(error).__name__,
            self._hide_password(error),
        )

    async def aclose(self, *, timeout_s: float = 10.0) -> None:
        """Close the pool, waiting up to `timeout_s` for connections in use; idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            same_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same_loop = False
        if not same_loop:
            self._pool = pool
            self._leave_pool()
            return
        try:
            await asyncio.wait_for(pool.close(), timeout_s)
        except (TimeoutError, OSError, self._asyncpg.InterfaceError):
            pool.terminate()
        logger.info("PostgreSQL sink closed its pool to %s", self._masked_url)
