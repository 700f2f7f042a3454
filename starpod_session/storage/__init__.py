"""The database: tables, the schema and its upgrades, one transaction per call, repositories.

``models`` are the tables (their column types are the backends': ``backends.column_types``);
``schema`` upgrades and checks them (the Alembic revisions live in the checkout's
``migrations/``); ``transactions`` runs each public call's work in one transaction;
``repositories/`` hold all SQL.
"""
