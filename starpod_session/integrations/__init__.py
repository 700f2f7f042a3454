"""Adapters that keep other agent frameworks' history in starpod_session.

Each lives in a module of its own and imports its framework only when that
module is imported (an extra installs it): importing this package imports none.

- :mod:`starpod_session.integrations.openai_agents`: a ``Session`` of the OpenAI
  Agents SDK (``pip install 'starpod-session[openai-agents]'``).
"""

__all__: list[str] = []
