"""The `tokenmeter` command: `demo`, `report`, `prices`, `reprice` and `replay`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from tokenmeter.demo import run_demo

    return run_demo(sink=args.sink)


def _cmd_report(args: argparse.Namespace) -> int:
    from tokenmeter.report import run_report

    return run_report(args)


def _cmd_replay(args: argparse.Namespace) -> int:
    from tokenmeter.replay import run_replay

    return run_replay(args)


def _cmd_prices(args: argparse.Namespace) -> int:
    from tokenmeter.pricing import describe_prices
    from tokenmeter.pricing._estimate import resolve

    text = describe_prices(args.model, args.provider)
    if resolve(args.provider, args.model) is None:
        print(text, file=sys.stderr)
        return 1
    print(text)
    return 0


def _cmd_reprice(args: argparse.Namespace) -> int:
    from tokenmeter.reprice import run_reprice

    return run_reprice(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenmeter",
        description=(
            "Meter what LLM agents cost: run the demo, report spend, show and re-apply prices, "
            "replay the spool."
        ),
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v INFO, -vv DEBUG)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a small tool-calling agent against recorded provider responses",
        description=(
            "Run three small agents on the real openai and anthropic clients, talking to a "
            "local server on 127.0.0.1 that replays recorded provider responses, and print "
            "what each agent and model cost. No API key and no network needed."
        ),
    )
    demo.add_argument(
        "--sink",
        help="sink URL for the records (default: TOKENMETER_SINK, else ./tokenmeter.jsonl)",
    )
    demo.set_defaults(handler=_cmd_demo)

    report = commands.add_parser(
        "report",
        help="print tokens and cost grouped by agent, model, provider, tag or day",
        description=(
            "Read records from a sink URL, a JSONL file or a SQLite file and print tokens, cost, "
            "cost per turn and per 1,000 turns for each group, with totals. Turns without a "
            "known cost are counted apart, never as zero."
        ),
    )
    report.add_argument(
        "source",
        nargs="?",
        help="sink URL (jsonl:PATH, sqlite:///PATH, postgresql://...), JSONL file or SQLite "
        "file to read (default: TOKENMETER_SINK, else ./tokenmeter.jsonl)",
    )
    report.add_argument(
        "--by",
        default="agent,model",
        help="comma-separated grouping: agent, model, provider, tag, day, status "
        "(default: agent,model)",
    )
    report.add_argument(
        "--since", help="only records at or after this time: ISO date/time or 7d, 12h, 30m"
    )
    report.add_argument(
        "--until", help="only records before this time: ISO date/time or 7d, 12h, 30m"
    )
    report.add_argument("--agent", help="only this agent")
    report.add_argument("--model", help="only turns whose main model is this one")
    report.add_argument("--tag", action="append", help="only records with this tag (repeatable)")
    report.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table: aligned text for an 80-column terminal (default); json or csv: for "
        "scripts, with costs as exact decimal strings",
    )
    report.add_argument(
        "--chart",
        type=Path,
        metavar="FILE",
        help="also draw cost over time to FILE.html (inline SVG) or FILE.png (needs matplotlib)",
    )
    report.add_argument(
        "--chart-by",
        choices=("agent", "model"),
        help="stack the chart's bars by agent or by model (default: model when --by starts "
        "with model or provider, else agent)",
    )
    report.set_defaults(handler=_cmd_report)

    prices = commands.add_parser(
        "prices",
        help="print the rates that apply to a model and where they come from",
        description=(
            "Print the per-million-token rates, tiers and fees tokenmeter would use for MODEL, "
            "from the price overrides (TOKENMETER_PRICES) or the genai-prices table."
        ),
    )
    prices.add_argument("model", help="model id as your code passes it, e.g. claude-sonnet-4-5")
    prices.add_argument("--provider", help="provider id or alias, e.g. anthropic, bedrock, xai")
    prices.set_defaults(handler=_cmd_prices)

    reprice = commands.add_parser(
        "reprice",
        help="price stored records again with today's prices, keeping the original cost",
        description=(
            "Price the records of a sink again with the prices in effect now (genai-prices' "
            "table and the overrides of TOKENMETER_PRICES) and store the result beside the "
            "original cost, in repriced_cost_usd, repriced_at and repriced_source; cost_usd "
            "is never changed. A JSONL file is rewritten atomically, SQL tables are updated "
            "by record id."
        ),
    )
    reprice.add_argument(
        "sink",
        help="sink URL (jsonl:PATH, sqlite:///PATH, postgresql://...), JSONL file or SQLite "
        "file to re-price",
    )
    reprice.add_argument(
        "--since", help="only records at or after this time: ISO date/time or 7d, 12h, 30m"
    )
    reprice.add_argument(
        "--until", help="only records before this time: ISO date/time or 7d, 12h, 30m"
    )
    reprice.add_argument(
        "--at",
        choices=("request", "now"),
        default="request",
        help="take time-dependent prices (off-peak hours, dated price changes) for each "
        "record's request time (default) or for now",
    )
    reprice.set_defaults(handler=_cmd_reprice)

    replay = commands.add_parser(
        "replay",
        help="deliver spooled records to their sinks",
        description=(
            "Deliver the batches that sinks could not take, from the spool directory, to "
            "the given sink URLs (default: TOKENMETER_SINK). A replayed record lands once "
            "in SQL sinks, which dedupe by record id."
        ),
    )
    replay.add_argument("sinks", nargs="*", help="sink URLs whose spool to replay")
    replay.add_argument(
        "--spool-dir", type=Path, help="spool directory (default: TOKENMETER_SPOOL_DIR)"
    )
    replay.add_argument("--list", action="store_true", help="only list what is spooled")
    replay.set_defaults(handler=_cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, ImportError) as error:
        print(f"tokenmeter {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
