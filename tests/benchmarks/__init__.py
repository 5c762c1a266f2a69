"""Benchmarks, run by `nox -s bench` or `python -m tests.benchmarks`; not part of the test run."""
