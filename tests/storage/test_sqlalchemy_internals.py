"""What the fast path expects of the SQLAlchemy internals it reads (``_driver/sqlalchemy_internals.py``).

CI runs this on the lowest SQLAlchemy ``pyproject.toml`` admits and on the newest:
a release that changes one of them fails here, by name.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, literal, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import OperationalError

from starpod_session._driver.sqlalchemy_internals import bound_in_order, dbapi_error, fetches_lastrowid

_table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("name", String(10)))

DIALECTS = {
    "sqlite": sqlite.pysqlite.dialect(),
    "postgresql": postgresql.psycopg.dialect(),
    "mariadb": mysql.pymysql.dialect(),
}


@pytest.mark.parametrize("name", DIALECTS)
def test_bound_parameters_come_in_the_order_and_under_the_names_the_sql_carries(name):
    dialect = DIALECTS[name]
    statement = (
        select(_table.c.id)
        .where(_table.c.name == bindparam("second"), _table.c.id > bindparam("first"))
        .where(_table.c.id != literal(7))
        .limit(bindparam("weird name(1)", type_=Integer))
    )
    compiled = statement.compile(dialect=dialect)
    bound = bound_in_order(compiled)
    assert [bind.key for bind, _name in bound if bind.required] == ["second", "first", "weird name(1)"]
    assert 7 in [bind.effective_value for bind, _name in bound if not bind.required]  # a literal the SQL binds
    if compiled.positional:
        assert len(re.findall(r"\?|%s", compiled.string)) == len(bound)
    else:
        for _bind, shown in bound:
            assert f"%({shown})s" in compiled.string


def test_only_postgresql_needs_returning_for_a_new_key():
    assert fetches_lastrowid(DIALECTS["sqlite"]) and fetches_lastrowid(DIALECTS["mariadb"])
    assert not fetches_lastrowid(DIALECTS["postgresql"])
    compiled = insert(_table).values(name="x").compile(dialect=DIALECTS["sqlite"])
    assert bound_in_order(compiled)


def test_a_driver_error_becomes_sqlalchemy_s_matching_class():
    dialect = sqlite.pysqlite.dialect(dbapi=sqlite3)
    error = sqlite3.OperationalError("database is locked")
    wrapped = dbapi_error("SELECT 1", (), error, dialect, connection_invalidated=True)
    assert isinstance(wrapped, OperationalError)
    assert wrapped.orig is error and wrapped.statement == "SELECT 1" and wrapped.connection_invalidated
