"""Opening the store: engine settings per database, and migrations applied on open.

SQLite runs in WAL mode (readers never block the writer) with ``synchronous=FULL``
so a committed transaction survives a power loss, not only a crash; every write
path batches many rows per commit, so the fsync is paid per batch.
PostgreSQL is used as is, through psycopg 3.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from deliver.errors import ConfigError, StoreError

__all__ = ["MIGRATIONS", "head_revision", "migrate", "open_engine", "redact_url"]

MIGRATIONS = Path(__file__).parent / "migrations"
_migrate_lock = threading.Lock()
#: PostgreSQL advisory lock key held while migrating ("soku" in ASCII)
_MIGRATE_KEY = 0x736F6B75


def redact_url(url: str) -> str:
    """The URL with any password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def open_engine(url: str, *, migrate_schema: bool = True) -> Engine:
    """An engine for ``url`` with the schema migrated to the latest revision."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {redact_url(url)}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # pooled (SQLAlchemy's default QueuePool): opening a connection and setting its
        # pragmas for every statement cost the engine's store thread a third of its time
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() in ("", "psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs["pool_pre_ping"] = True
    else:
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
        )
    kwargs["json_serializer"] = _json_dumps
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"cannot use database {redact_url(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate_schema:
        migrate(engine)
    return engine


def _json_dumps(value: Any) -> str:
    """JSON columns' encoder: orjson when installed (probe evidence is most of what the
    store writes, and the standard encoder was a quarter of that cost), else json."""
    try:
        import orjson
    except ImportError:
        return json.dumps(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # e.g. integer dict keys, which json turns into strings
        return json.dumps(value)


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # pysqlite opens transactions lazily and would let a write upgrade a read lock
    # mid-transaction (SQLITE_BUSY without waiting); BEGIN IMMEDIATE is issued by
    # the store where a read-then-write must be atomic.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the latest revision; cheap when it is already there."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        with _migrate_lock, engine.begin() as conn:
            # Other processes may open the same fresh database at once: hold a
            # database-wide lock for the whole upgrade, which then starts by reading the
            # revision again. On SQLite this also makes the DDL one transaction (pysqlite
            # would otherwise autocommit each CREATE, and a crash would leave half a schema).
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_KEY})
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise StoreError(
            f"cannot open database {redact_url(str(engine.url))}: {exc.orig or exc}"
        ) from None
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot migrate database {redact_url(str(engine.url))}: {type(exc).__name__}"
        ) from None
