"""What differs between SQLite, PostgreSQL and MariaDB: URLs, engines and their connect settings, begin statements."""
