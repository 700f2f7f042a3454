"""Adapters of agent frameworks onto starpod_session, each behind an extra of its own (imported only when used)."""
