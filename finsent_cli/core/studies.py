"""Where `finsent tune` keeps its studies: Optuna's RDB storage on any SQLAlchemy URL, and heartbeats.

A storage URL is checked before anything trains: a malformed URL, an unknown database kind or a missing
driver is one line naming it (with the password masked), and so is a server that cannot be reached when the
study is opened. Every storage records heartbeats (Optuna's heartbeat mechanism, made for ``optimize``):
with ask-and-tell nothing beats by itself, so :class:`Heartbeat` records one for a running trial in a
thread, and ``core.flows.tune`` asks Optuna to fail (and queue again) the trials whose beat stopped.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from typing_extensions import Self

from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint

_PASSWORD = re.compile(r"(://[^/@:]*:)[^@/]*@")
_CREATE_TRIES = 5  # processes creating the tables of a fresh database at once: the losers try again
CONNECT_TIMEOUT_S = 10  # a server that does not answer is reported after this long, not after TCP's minutes


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***`` (also when SQLAlchemy cannot parse it)."""
    return _PASSWORD.sub(r"\1***@", url)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` is a SQLite database (a file on this machine: processes of one machine only)."""
    return url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"


def where(url: str) -> str:
    """How messages name a storage: ``host:port/database`` of a server, the file of SQLite."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if is_sqlite(url):
        return u.database or "an in-memory SQLite database"
    port = u.port or {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}.get(u.get_backend_name())
    return f"{u.host or 'localhost'}{f':{port}' if port else ''}/{u.database or ''}"


def driver_url(url: str) -> str:
    """``url`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 reads a bare ``postgresql://`` as
    psycopg 3, while finsent's ``postgres`` extra installs psycopg2; a URL naming its driver is kept."""
    import importlib.util

    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.drivername != "postgresql" or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        return url  # check_storage names the extra
    return u.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def check_storage(url: str, source: str = "--storage") -> None:
    """Refuse a storage URL that cannot work, without connecting: not a URL, an unknown kind of database,
    a driver that is not installed.

    Args:
        url: a SQLAlchemy URL (``postgresql://user:password@host:5432/db``, ``sqlite:///study.db``).
        source: what the messages name (``--storage`` or ``tune.storage``).

    Raises:
        FinsentError: one line naming the URL (password masked) and the fix; exit code 2.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise FinsentError(
            f"{source}: {masked(url)!r} is not a database URL (e.g. postgresql://user@host:5432/db or "
            "sqlite:///path/study.db)",
            exit_code=2,
        ) from None
    if u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:"):
        raise FinsentError(
            f"{source}: {url} is an in-memory database, gone when the process ends; give a file "
            "(sqlite:///path/study.db)",
            exit_code=2,
        )
    try:
        dialect = make_url(driver_url(url)).get_dialect()
    except NoSuchModuleError:
        raise FinsentError(
            f"{source}: {masked(url)}: unknown kind of database {u.drivername!r} (e.g. postgresql, mysql, sqlite)",
            exit_code=2,
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or u.get_driver_name()).split(".")[0]
        # a bare postgresql:// takes the extra's psycopg2 (driver_url); a URL naming its driver needs that one
        extra = module == "psycopg2" or (module == "psycopg" and u.drivername == "postgresql")
        fix = install_hint("postgres") if extra else f"pip install {module}"
        raise FinsentError(
            f"{source}: {masked(url)} needs the Python package {module}, which is not installed: {fix}", exit_code=2
        ) from None


def open_storage(
    url: str,
    heartbeat_interval: float,
    grace_period: float,
    on_stale: Callable[[Any, Any], None] | None = None,
) -> Any:
    """Optuna's RDB storage on ``url``, with heartbeats, its tables created on first use.

    Args:
        url: a URL that passed :func:`check_storage`.
        heartbeat_interval: seconds between a running trial's heartbeats (see :class:`Heartbeat`).
        grace_period: seconds without one after which a running trial is failed by
            ``optuna.storages.fail_stale_trials``.
        on_stale: ``(study, failed trial)``, called for each trial failed that way (Optuna's
            ``heartbeat_stale_trial_callback``).

    Raises:
        FinsentError: the database cannot be reached or refuses the login (one line: where, and what the
            server said; the password never shown).
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

    if is_sqlite(url):
        # SQLite allows one writer at a time: a process waits for the lock instead of failing at once
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}}
    else:
        # a connection idle through a long trial may have been closed by the server: test it before use
        engine_kwargs = {"pool_pre_ping": True}
        if url.split(":", 1)[0].split("+")[0] in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in url:
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    for attempt in range(_CREATE_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are experimental in Optuna
                return optuna.storages.RDBStorage(
                    driver_url(url),
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,  # type: ignore[arg-type]  # seconds; floats work
                    grace_period=grace_period,  # type: ignore[arg-type]
                    heartbeat_stale_trial_callback=on_stale,
                )
        except DBAPIError as exc:
            said = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            # two processes creating the tables of an empty database at once: PostgreSQL lets one win and
            # tells the other "already exists" (or a duplicate key in its catalog); the tables are there now
            racing = isinstance(exc, IntegrityError | ProgrammingError) and (
                "already exists" in said or "duplicate" in said.lower()
            )
            if racing and attempt < _CREATE_TRIES - 1:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise FinsentError(
                f"storage: cannot open the study database at {where(url)} ({masked(url)}): {said}"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


class Heartbeat:
    """Records a running trial as alive every ``interval`` seconds, in a daemon thread, until closed.

    ``Study.optimize`` beats by itself; ask-and-tell (``finsent tune``) does not. The first heartbeat is
    recorded before ``__enter__`` returns, so a trial is never running without one (Optuna never fails a
    trial that has no heartbeat at all). A failed write (the database restarting) is retried at the next
    beat: the trial is taken for dead only if the writes fail for the whole grace period.
    """

    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> Self:
        self.storage.record_heartbeat(self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.storage.record_heartbeat(self.trial_id)
                except Exception:  # noqa: BLE001, S112 - the next beat tries again (see the class docstring)
                    continue
        finally:
            self.storage.remove_session()  # this thread's connection (SQLite's may not be closed by another)


@contextmanager
def quiet_heartbeat_warnings() -> Iterator[None]:
    """Silence Optuna's warnings that heartbeats are experimental and "supposed to be used with optimize":
    finsent beats itself (:class:`Heartbeat`) and fails stale trials itself."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield
