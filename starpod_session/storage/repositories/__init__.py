"""One repository per aggregate; all SQL of the library lives here.

Repositories take the open ``connection`` of a transaction and never commit: the facade owns
the transaction. They return plain records, never ORM objects.
"""

from .compactions import CompactionRepository
from .messages import MessageRepository
from .sessions import SessionRepository
from .tool_calls import ToolCallRepository
from .usage import UsageRepository

__all__ = ["CompactionRepository", "MessageRepository", "SessionRepository", "ToolCallRepository", "UsageRepository"]
