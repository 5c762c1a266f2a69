"""Sessions for tests, linting, type checking and benchmarks: `nox -s NAME`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

PYTHON_VERSIONS = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHON_VERSIONS[0])
def tests(session: nox.Session) -> None:
    """Run the test suite (PostgreSQL tests start a throwaway server)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON_VERSIONS[0])
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "tokenmeter", "tests")
    session.run("ruff", "format", "--check", "tokenmeter", "tests")


@nox.session(python=PYTHON_VERSIONS[0])
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy in strict mode."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "tokenmeter")


@nox.session(python=PYTHON_VERSIONS[0])
def bench(session: nox.Session) -> None:
    """Run the benchmarks in tests/benchmarks; figures go to docs/benchmarks.md by hand."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.benchmarks", *session.posargs)
