"""starpod_session: channel-aware session lifecycle, message store and cost accounting for AI agents.

Start with :class:`SessionManager` (or :class:`AsyncSessionManager` in async code).
"""

from ._version import __version__
from .async_manager import AsyncSessionManager
from .channels import (
    Channel,
    ChannelResolver,
    DailyResetResolver,
    ExplicitResolver,
    TimeGapResolver,
    slack_session_key,
)
from .config import AgentConfig, ChannelConfig
from .errors import (
    ConfigError,
    DumpInvalid,
    ExportError,
    InvalidInput,
    SchemaOutdated,
    SchemaTooNew,
    SessionNotFound,
    StarpodSessionError,
    StorageBusy,
    StorageError,
    TargetNotEmpty,
    VerificationFailed,
)
from .features.transfer import Check, TransferProgress, TransferReport, copy_database, dump_database, restore_database
from .manager import AUTO_CLOSE_SUMMARY, SessionManager
from .prices import ModelPrice, PriceTable
from .records import (
    Continue,
    CostOverview,
    DailyModelCost,
    Erasure,
    ModelCostSummary,
    New,
    OpenedSession,
    SearchHit,
    SessionDecision,
    SessionMessage,
    SessionMeta,
    ToolUsageSummary,
    UsageRecord,
    UsageSummary,
    UserCostSummary,
)
from .retry import RetryPolicy

__all__ = [
    "AUTO_CLOSE_SUMMARY",
    "AgentConfig",
    "AsyncSessionManager",
    "Channel",
    "ChannelConfig",
    "ChannelResolver",
    "Check",
    "ConfigError",
    "Continue",
    "CostOverview",
    "DailyModelCost",
    "DailyResetResolver",
    "DumpInvalid",
    "Erasure",
    "ExplicitResolver",
    "ExportError",
    "InvalidInput",
    "ModelCostSummary",
    "ModelPrice",
    "New",
    "OpenedSession",
    "PriceTable",
    "RetryPolicy",
    "SchemaOutdated",
    "SchemaTooNew",
    "SearchHit",
    "SessionDecision",
    "SessionManager",
    "SessionMessage",
    "SessionMeta",
    "SessionNotFound",
    "StarpodSessionError",
    "StorageBusy",
    "StorageError",
    "TargetNotEmpty",
    "TimeGapResolver",
    "ToolUsageSummary",
    "TransferProgress",
    "TransferReport",
    "UsageRecord",
    "UsageSummary",
    "UserCostSummary",
    "VerificationFailed",
    "__version__",
    "copy_database",
    "dump_database",
    "restore_database",
    "slack_session_key",
]
