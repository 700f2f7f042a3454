"""The fast path: prepared work straight on the driver's connection, and when it must step aside.

``events.ListenerWatch`` tells whether anyone listens to the engine's connection
events; while someone does, every call takes SQLAlchemy's Core path, where
listeners get the ``Connection`` and execution context SQLAlchemy promises them.
"""
