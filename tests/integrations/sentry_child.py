"""Every public call under Sentry's SQLAlchemy integration, in a process of its own; prints what Sentry captured.

``python -m tests.integrations.sentry_child TARGET SESSIONS_DIR`` (from the checkout's
top folder), run by ``test_tracing.py``: ``SqlalchemyIntegration`` listens on
SQLAlchemy's ``Engine`` class, so on every engine of the process, and Sentry sets an
integration up once per process with no way to take it down. In the test process
it would stay on every later test's engines (and turn their calls onto the path
taken when a listener is attached); here it ends with the process.

Sentry gets a fake DSN and a transport that keeps envelopes in memory: nothing
leaves the machine. The calls run in one transaction, each in a span of its own
(op :data:`CALL_OP`); the last line printed is JSON: call name → the ``db`` spans
Sentry recorded inside that call (their description and data).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration
from sentry_sdk.transport import Transport

from starpod_session import SessionManager

from .calls import run_public_calls

#: The op of the span around each public call.
CALL_OP = "starpod_session.call"


class MemoryTransport(Transport):
    """Keeps every envelope instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


def main(target: str, sessions_dir: str) -> dict[str, Any]:
    transport = MemoryTransport()
    sentry_sdk.init(
        dsn="https://public@example.invalid/1",
        transport=transport,
        integrations=[SqlalchemyIntegration()],
        default_integrations=False,
        auto_enabling_integrations=False,
        traces_sample_rate=1.0,
    )
    calls: dict[str, str] = {}  # span id → call name

    @contextmanager
    def each(name: str) -> Iterator[None]:
        with sentry_sdk.start_span(op=CALL_OP, name=name) as span:
            calls[span.span_id] = name
            yield

    # Created after init, as an application does; the listener is on the Engine class anyway.
    with (
        SessionManager(target, sessions_dir) as manager,
        sentry_sdk.start_transaction(op="test", name="starpod_session public calls"),
    ):
        run_public_calls(manager, each)
    sentry_sdk.flush()
    sentry_sdk.get_client().close()

    transactions = [
        item.payload.json
        for envelope in transport.envelopes
        for item in envelope.items
        if item.type == "transaction" and item.payload.json is not None
    ]
    db_spans: dict[str, list[dict[str, Any]]] = {name: [] for name in calls.values()}
    for transaction in transactions:
        for span in transaction.get("spans", []):
            if span.get("op") == "db" and span.get("parent_span_id") in calls:
                db_spans[calls[span["parent_span_id"]]].append(
                    {"description": span.get("description"), "data": span.get("data", {})}
                )
    return {"transactions": len(transactions), "calls": db_spans}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
