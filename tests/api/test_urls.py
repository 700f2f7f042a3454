"""Database URLs at the door: unknown schemes and drivers are our errors, and no password is ever shown."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from starpod_session import InvalidInput, SessionManager, StarpodSessionError, StorageError
from starpod_session._common.urls import redact_url
from starpod_session.backends.engine import to_url

from ..backends import needs_driver

SECRET = "S3cretPw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgres://user:{SECRET}@127.0.0.1/db",
        "nosuch://host/db",
        "oracle://scott@host/db",
        f"postgresql+nosuch://user:{SECRET}@127.0.0.1/db",
    ],
)
def test_an_unknown_scheme_or_driver_is_invalid_input_naming_the_accepted_forms(url):
    with pytest.raises(InvalidInput) as raised:
        SessionManager(url)
    assert raised.value.field == "db_path"
    message = str(raised.value)
    assert "postgresql+psycopg://" in message and "mysql+pymysql://" in message and "file path" in message
    assert SECRET not in message


@pytest.mark.parametrize("url", ["postgresql+asyncpg://u@127.0.0.1/db", "postgresql+psycopg_async://u@127.0.0.1/db"])
def test_an_async_driver_is_refused_saying_so(url):
    with pytest.raises(InvalidInput, match="async"):
        SessionManager(url)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("mysql+mysqldb://root@127.0.0.1:1/test", "MySQLdb", "mysql"),
        ("postgresql+psycopg2://postgres@127.0.0.1:1/test", "psycopg2", "postgres"),
    ],
)
def test_a_driver_that_is_not_installed_names_the_extra_to_install(url, module, extra):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(StarpodSessionError, match=rf"pip install 'starpod-session\[{extra}\]'"):
        SessionManager(url)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "psycopg", "postgres"),
        ("mysql+pymysql://root@127.0.0.1:1/test", "pymysql", "mysql"),
    ],
)
def test_our_own_driver_missing_names_the_extra_to_install(url, module, extra):
    # A fresh interpreter in which the driver cannot be imported, as on a machine without the extra.
    script = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from starpod_session import SessionManager, StarpodSessionError\n"
        f"try:\n    SessionManager({url!r})\n"
        "except StarpodSessionError as error:\n    print(type(error).__name__, error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"pip install 'starpod-session[{extra}]'" in done.stdout


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        pytest.param("postgresql://u@h/db", "postgresql+psycopg", marks=needs_driver("postgresql")),
        pytest.param("mysql://u@h/db", "mysql+pymysql", marks=needs_driver("mariadb")),
        pytest.param("mariadb://u@h/db", "mariadb+pymysql", marks=needs_driver("mariadb")),
    ],
)
def test_a_server_url_without_a_driver_uses_the_one_the_extra_installs(url, driver):
    assert to_url(url).drivername == driver


UNREACHABLE = [
    *(
        pytest.param(url, marks=needs_driver("postgresql"))
        for url in (
            f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/test",
            f"postgresql+psycopg://postgres@127.0.0.1:1/test?password={SECRET}",
            f"postgresql+psycopg://postgres@127.0.0.1:1/test?sslpassword={SECRET}&connect_timeout=5",
        )
    ),
    *(
        pytest.param(url, marks=needs_driver("mariadb"))
        for url in (
            f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/test",
            f"mysql+pymysql://root@127.0.0.1:1/test?password={SECRET}",
            f"mysql+pymysql://root@127.0.0.1:1/test?passwd={SECRET}",
        )
    ),
]


@pytest.mark.parametrize("url", UNREACHABLE)
def test_no_password_shows_in_the_error_of_an_unreachable_server(url):
    with pytest.raises(StorageError) as raised:
        SessionManager(url)
    assert SECRET not in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value)


def test_a_password_in_the_query_string_is_hidden_on_a_real_server(backend, db_target):
    """PostgreSQL here may trust local connections (then the manager opens); MariaDB refuses the password."""
    if backend == "sqlite":
        pytest.skip("SQLite URLs carry no password")
    key = "password"
    url = f"{db_target}{'&' if '?' in db_target else '?'}{key}=Wrong{SECRET}"
    try:
        manager = SessionManager(url)
    except StorageError as error:
        assert SECRET not in str(error)
        assert "***" in str(error)
        return
    with manager:
        assert SECRET not in repr(manager) and SECRET not in manager.target
        assert f"{key}=***" in manager.target


def test_redaction_hides_passwords_wherever_they_are():
    from starpod_session._common.urls import redact_text, redact_url

    url = f"postgresql+psycopg://u:{SECRET}1@h/db?sslpassword={SECRET}2&application_name=app&PWD={SECRET}3"
    shown = redact_url(url)
    assert SECRET not in shown
    assert "application_name=app" in shown and "u:***@h" in shown
    driver_text = f'connection to "host=h password={SECRET}4 user=u" failed; tried postgresql://u:{SECRET}5@h/db'
    assert SECRET not in redact_text(driver_text)
    assert redact_text(f"server said: bad value {SECRET}6", [f"{SECRET}6"]) == "server said: bad value ***"


def test_an_upgrade_given_no_target_names_a_server_database_with_every_password_hidden():
    from types import SimpleNamespace

    from sqlalchemy.engine import make_url

    from starpod_session.storage.schema import _describe_target

    engine = SimpleNamespace(url=make_url(f"postgresql+psycopg://u:{SECRET}1@h/db?password={SECRET}2"))
    assert _describe_target(engine) == "postgresql+psycopg://u:***@h/db?password=***"  # type: ignore[arg-type]


def test_a_database_built_by_hand_is_checked_and_hidden_like_a_url(tmp_path):
    """``engine.Database`` skips the checks only when ``to_database`` made it (the command line's once)."""
    from sqlalchemy.engine import make_url

    from starpod_session.backends.engine import Database, to_database

    checked = to_database(tmp_path / "s.db")
    assert to_database(checked) is checked
    by_hand = Database(make_url(f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/test"), f"shown with {SECRET}")
    # Unreachable (StorageError), or PyMySQL missing (StarpodSessionError naming the extra): never the secret.
    with pytest.raises(StarpodSessionError) as raised:
        SessionManager(by_hand)
    assert SECRET not in str(raised.value)
    unknown = Database(make_url("mysql+nosuchdriver://root@127.0.0.1:1/test"), "shown")
    with pytest.raises(InvalidInput, match="unknown driver"):
        SessionManager(unknown)


@needs_driver("mariadb")
def test_a_database_built_by_hand_gets_its_password_hidden_anew():
    from sqlalchemy.engine import make_url

    from starpod_session.backends.engine import Database, to_database

    by_hand = Database(make_url(f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/test"), f"shown with {SECRET}")
    assert to_database(by_hand).shown == "mysql+pymysql://root:***@127.0.0.1:1/test"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://app:s3cret@/db?host=10.0.0.1:5433&host=10.0.0.2:5434&target_session_attrs=read-write",
            "postgresql+psycopg://app:***@/db?host=10.0.0.1:5433&host=10.0.0.2:5434&target_session_attrs=read-write",
        ),
        (
            "postgresql+psycopg://app@/db?host=h1,h2&port=5433,5434&password=s3cret&target_session_attrs=read-write",
            "postgresql+psycopg://app@/db?host=h1,h2&password=***&port=5433,5434&target_session_attrs=read-write",
        ),
    ],
)
def test_a_multi_host_url_is_shown_readable_with_its_password_hidden(url, shown):
    """libpq's multi-host forms (docs/guides/past-one-server.md): hosts and ports as written, not percent-encoded."""
    assert redact_url(url) == shown
