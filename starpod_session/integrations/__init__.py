"""Adapters of agent frameworks onto starpod_session, each behind an extra of its own (imported only when used).

- :mod:`starpod_session.integrations.adk`: Google ADK's session service (``pip install 'starpod-session[adk]'``).
- :mod:`starpod_session.integrations.openai_agents`: a ``Session`` of the OpenAI Agents SDK
  (``pip install 'starpod-session[openai-agents]'``).
"""
