"""What the feature modules' calls use of the ``SessionManager`` they are methods of."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..channels import ChannelRegistry
from ..records import SessionMeta
from ..storage.replicas import ReplicaReads
from ..storage.transactions import TransactionRunner

__all__ = ["CloseCallback", "ManagerState"]

#: Called with the metadata of each session a call auto-closed, after the commit.
CloseCallback = Callable[[SessionMeta], object]


class ManagerState(Protocol):
    """The state ``SessionManager.__init__`` sets up, which every call of the feature modules takes as ``self``.

    The calls are plain functions of their feature module, bound as the manager's
    methods in its class body (``manager.py``): no call goes through one more
    function on its way to the database.
    """

    #: One transaction per call: ``write``/``read``, ``write_prepared``/``read_prepared``.
    _transactions: TransactionRunner
    #: The reads that may lag (``list_sessions``, ``search_messages``, ``cost_overview``): on a
    #: read replica when the manager has one, else on the primary (``storage/replicas.py``).
    _lagging_reads: ReplicaReads
    #: The channel resolvers (``agent.toml`` and the manager's ``channels``).
    _channels: ChannelRegistry
    #: ``on_close``: called with each session a call auto-closed, after the commit.
    _on_close: CloseCallback | None
    #: SQLite, written by this process: messages may wait for the search index's next batch.
    _indexes_waiting: bool
    #: SQLite, read-only: the search also reads a copy of the messages waiting for the index.
    _searches_waiting: bool
    #: Where transcripts go (``None``: no export).
    sessions_dir: Path | None

    def get_session(self, session_id: str) -> SessionMeta | None: ...
