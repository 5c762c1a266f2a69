"""PostgreSQL for the tests: the server named by TOKENMETER_TEST_POSTGRES_DSN, or a throwaway one.

A throwaway server runs the PostgreSQL binaries that the `pgserver` wheel bundles (a test
dependency), or those of `TOKENMETER_TEST_POSTGRES_BIN`, or Debian's `postgresql` package, in
a temporary directory. It listens on a unix socket only, never on a TCP port. PostgreSQL
refuses to run as root, so under root the server runs as the `nobody` user.

Test modules get the DSN from the session-scoped `postgres_dsn` fixture defined here. Import
it into a conftest.py or test module, or wrap `shared_postgres_dsn()` in a fixture.
When no server can be started, the fixture raises `PostgresUnavailable` with the reason: the
tests that need PostgreSQL fail, they are never skipped. Tests that stop and restart a server
start a `LocalPostgres` of their own, also when TOKENMETER_TEST_POSTGRES_DSN is set.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

__all__ = [
    "BIN_ENV",
    "DSN_ENV",
    "LocalPostgres",
    "PostgresUnavailable",
    "find_postgres_bin",
    "postgres_dsn",
    "shared_postgres_dsn",
    "with_query",
]

DSN_ENV = "TOKENMETER_TEST_POSTGRES_DSN"
"""Environment variable naming an existing server to test against instead of a throwaway one."""
BIN_ENV = "TOKENMETER_TEST_POSTGRES_BIN"
"""Environment variable naming a directory with `initdb`, `pg_ctl` and `postgres`."""

_SERVER_USER = "nobody"
_START_TIMEOUT_S = 60
_TOOLS = ("initdb", "pg_ctl", "postgres")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started for the tests."""


def _bin_dir_problem(bin_dir: Path) -> str | None:
    missing = [tool for tool in _TOOLS if not (bin_dir / tool).is_file()]
    if missing:
        return f"{bin_dir} has no {', '.join(missing)}"
    return None


def _pgserver_bin_dir() -> Path | None:
    # find_spec locates the package without importing it: importing pgserver creates lock
    # files and may add a system user, and only its bundled binaries are needed here.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _debian_bin_dirs() -> list[Path]:
    def major_version(path: Path) -> int:
        return int(path.parent.name) if path.parent.name.isdigit() else -1

    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major_version, reverse=True)


def find_postgres_bin() -> Path:
    """Find a directory with PostgreSQL's `initdb`, `pg_ctl` and `postgres` binaries.

    Looks at `TOKENMETER_TEST_POSTGRES_BIN`, then the `pgserver` wheel, then Debian's
    `/usr/lib/postgresql/*/bin`, newest major version first.

    Raises:
        PostgresUnavailable: if no candidate has all three binaries; the message lists why
            each candidate was rejected.
    """
    reasons: list[str] = []
    candidates: list[Path] = []

    configured = os.environ.get(BIN_ENV)
    if configured:
        candidates.append(Path(configured))
    pgserver_bin = _pgserver_bin_dir()
    if pgserver_bin is None:
        reasons.append("the pgserver package is not installed (pip install pgserver)")
    else:
        candidates.append(pgserver_bin)
    candidates.extend(_debian_bin_dirs())

    for candidate in candidates:
        problem = _bin_dir_problem(candidate)
        if problem is None:
            return candidate
        reasons.append(problem)

    raise PostgresUnavailable(
        "found no PostgreSQL binaries for a throwaway test server: "
        + "; ".join(reasons or ["no candidate directory"])
        + f". Install pgserver, set {BIN_ENV} to a directory with initdb, pg_ctl and "
        f"postgres, or set {DSN_ENV} to the DSN of a running server."
    )


def _traversable_by_others(path: Path) -> bool:
    """Whether users other than the owner can reach and run `path`: o+x on it and its parents."""
    return all(part.stat().st_mode & stat.S_IXOTH for part in (path, *path.parents))


class LocalPostgres:
    """A PostgreSQL server in a temporary directory that the tests own, stop and restart.

    It listens on a unix socket in its directory and on no TCP port, and trusts every local
    connection. It runs with `fsync=off`, which loses committed rows only when the operating
    system crashes. Tests stop the server cleanly or kill it, and committed rows survive both.

    Args:
        bin_dir: Directory with `initdb`, `pg_ctl` and `postgres`; `find_postgres_bin()` by
            default.

    Raises:
        PostgresUnavailable: from `start()`, with the server's log, if it cannot start.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir if bin_dir is not None else find_postgres_bin()
        problem = _bin_dir_problem(self.bin_dir)
        if problem is not None:
            raise PostgresUnavailable(f"cannot start a test server: {problem}")
        self.root = Path(tempfile.mkdtemp(prefix="tokenmeter-pg-", dir=tempfile.gettempdir()))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "server.log"
        self._run_as: pwd.struct_passwd | None = None
        self._initialized = False

        try:
            self.socket_dir.mkdir()
            if os.geteuid() == 0:
                self._prepare_unprivileged_user()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _prepare_unprivileged_user(self) -> None:
        try:
            self._run_as = pwd.getpwnam(_SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, and PostgreSQL refuses to run as root, but the system has "
                f"no {_SERVER_USER!r} user to run it as; set {DSN_ENV} instead"
            ) from None
        if not _traversable_by_others(self.root.parent):
            raise PostgresUnavailable(
                f"running as root: the {_SERVER_USER!r} user cannot enter the temporary "
                f"directory {self.root.parent}; point TMPDIR at a directory every user can enter"
            )

        if not _traversable_by_others(self.bin_dir / "postgres"):
            self.bin_dir = self._copy_installation()

        for path in (self.root, self.socket_dir):
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _copy_installation(self) -> Path:
        """Copy the binaries into the server's directory, for a user who cannot reach them.

        That happens for a virtualenv under /root. The installation finds its files by
        relative paths, and the pgserver wheel's binaries find their shared libraries in
        `site-packages/pgserver.libs`, so the copy keeps that layout.
        """
        prefix = self.bin_dir.parent
        package = prefix.parent
        bundled_libs = package.parent / f"{package.name}.libs"
        copy_root = self.root / "install"

        copied_prefix = copy_root / package.name / prefix.name
        shutil.copytree(prefix, copied_prefix, symlinks=True)
        if bundled_libs.is_dir():
            shutil.copytree(bundled_libs, copy_root / bundled_libs.name, symlinks=True)
        return copied_prefix / self.bin_dir.name

    @property
    def dsn(self) -> str:
        """A libpq URL for the `postgres` superuser and database, through the unix socket."""
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        # pg_ctl's children keep inherited pipes open, so output goes to a file, not a pipe.
        with tempfile.TemporaryFile("w+") as output:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={**os.environ, "HOME": str(self.root), "LC_ALL": "C"},
                user=None if self._run_as is None else self._run_as.pw_uid,
                group=None if self._run_as is None else self._run_as.pw_gid,
                extra_groups=None if self._run_as is None else [],
                timeout=_START_TIMEOUT_S + 30,
                check=False,
            )
            output.seek(0)
            text = output.read()

        if completed.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else "(no server log)"
            raise PostgresUnavailable(
                f"{tool} {' '.join(args)} failed with exit code {completed.returncode}:\n"
                f"{text}\nserver log {self.log_path}:\n{log[-4000:]}"
            )

    def start(self) -> None:
        """Initialize the data directory on the first call, then start the server and wait."""
        if not self._initialized:
            self._run(
                "initdb",
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            )  # fmt: skip
            self._initialized = True

        options = f"-c listen_addresses='' -k {self.socket_dir} -c fsync=off"
        self._run(
            "pg_ctl",
            "start",
            "-D", str(self.data_dir),
            "-l", str(self.log_path),
            "-w",
            "-t", str(_START_TIMEOUT_S),
            "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects clients cleanly, `immediate` kills it."""
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def restart(self, mode: str = "fast") -> None:
        """Stop the server in `mode`, then start it again on the same socket and data."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        """Whether the server's postmaster.pid names a live process."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        first_line = pid_file.read_text().split("\n", 1)[0]
        if not re.fullmatch(r"\d+", first_line):
            return False
        try:
            os.kill(int(first_line), 0)
        except ProcessLookupError:
            return False
        return True

    def cleanup(self) -> None:
        """Stop the server if it runs and delete its directory."""
        try:
            if self.is_running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()


_shared_server: LocalPostgres | None = None


def shared_postgres_dsn() -> str:
    """Return the DSN of the server the whole test process shares.

    That is `TOKENMETER_TEST_POSTGRES_DSN` when set. Otherwise the first call starts a
    `LocalPostgres`, which stops when the process exits.

    Raises:
        PostgresUnavailable: if no server can be started; the message gives the reason.
    """
    configured = os.environ.get(DSN_ENV)
    if configured:
        return configured

    global _shared_server
    if _shared_server is None:
        server = LocalPostgres()
        atexit.register(server.cleanup)
        server.start()
        _shared_server = server
    return _shared_server.dsn


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of a PostgreSQL server for this test session; see `shared_postgres_dsn()`."""
    return shared_postgres_dsn()


def with_query(url: str, **params: str) -> str:
    """Add query parameters to a URL that may already have some, such as `?host=/socket`."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))
