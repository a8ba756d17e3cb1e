//! Integration tests for the store, run against SQLite in a temporary directory and, when
//! `HUBFLEET_TEST_POSTGRES_URL` is set, against PostgreSQL (a fresh database per test).
//!
//! Every test written with [`store_test!`] runs the same body on both backends.

mod harness;

mod concurrency;
mod groups;
mod migrations;
mod oauth;
mod servers;
mod services;
mod sessions;
mod shares;
mod sqlite_only;
mod timings;
mod tokens;
mod users;
