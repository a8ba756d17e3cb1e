//! The hub database: SQLite (WAL) by default, PostgreSQL for production.
//!
//! One set of portable SQL serves both backends (see `store.rs` for how), with per-backend
//! migrations embedded in the binary and applied by [`Store::open`]. Timestamps are stored as
//! microseconds since the Unix epoch, JSON as text, and credentials only as hashes.
//!
//! Error conventions: updates and deletes addressed by id return [`StoreError::NotFound`] when no
//! row matched; inserts naming a missing user or service return `NotFound` too, and inserts that
//! repeat a unique key return [`StoreError::Conflict`]. `touch_*` calls and
//! [`Store::delete_oauth_client`] treat a missing row as success.

mod auth_state;
mod error;
mod groups;
mod migrate;
mod model;
mod oauth;
mod passwords;
mod servers;
mod services;
mod sessions;
mod shares;
mod stats;
mod store;
mod tokens;
mod users;

pub use error::StoreError;
pub use groups::RoleHolder;
pub use migrate::SCHEMA_VERSION;
pub use model::{
    Backend, Group, NewService, NewSession, NewToken, OAuthClient, OAuthCode, Server, ServerStatus,
    Service, Session, TokenOwner, TokenRecord, User, UserDetails, UserQuery, UserSort, UserState,
    Visibility,
};
pub use passwords::{NativeAccountRow, StoredSharedPassword};
pub use services::ServiceCredentials;
pub use shares::{Share, ShareCode, ShareQuery, ShareWith, SharedServer, filter_to_server};
pub use store::Store;
