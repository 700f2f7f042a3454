"""Alembic environment of starpod_session.

Used both by the ``alembic`` command in a checkout and by the library itself
(which passes an open connection in ``config.attributes["connection"]``).
"""

from __future__ import annotations

import logging.config
import os

from alembic import context

from starpod_session.backends.engine import create_storage_engine, to_url
from starpod_session.storage.models import Base
from starpod_session.storage.schema import expression_index_warnings_silenced, include_in_comparison

config = context.config

# The alembic command line reads alembic.ini, whose logging says what each step does. The library
# builds its Config without a file (schema.alembic_config) and stays silent.
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_with(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_in_comparison,
        compare_type=True,
        # The library's upgrade_schema(progress=...): called after each revision is applied.
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction(), expression_index_warnings_silenced():
        context.run_migrations()


def database_target() -> str:
    target = context.get_x_argument(as_dictionary=True).get("db") or os.environ.get("STARPOD_SESSION_DB")
    if not target:
        raise SystemExit("say which database: alembic -x db=PATH_OR_URL ... (or set STARPOD_SESSION_DB)")
    return target


connection = config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    engine = create_storage_engine(to_url(database_target()))
    try:
        with engine.begin() as connection:
            run_with(connection)
    finally:
        engine.dispose()
