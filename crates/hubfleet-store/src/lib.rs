//! The hub database (SQLite by default, PostgreSQL for production): migrations and queries.
