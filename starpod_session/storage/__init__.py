"""The database: tables, column types, the schema and its upgrades, one transaction per call, repositories.

``models`` and ``column_types`` are the tables; ``schema`` upgrades and checks them
(the Alembic revisions live in the checkout's ``migrations/``); ``transactions`` runs
each public call's work in one transaction; ``repositories/`` hold all SQL.
"""
