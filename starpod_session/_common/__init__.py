"""Plain values every layer may use, with no database: argument checks, RFC 3339 timestamps, length limits,
password redaction, folder creation, search-query parsing, tool messages."""
