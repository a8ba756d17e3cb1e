//! Schema migrations: a fresh database, an upgrade from every earlier version, idempotent reopen,
//! and refusal to open a database from a newer hubfleet.

use hubfleet_store::{SCHEMA_VERSION, Store, StoreError};

use crate::harness::{drop_postgres_schema, postgres_url, sqlite_url, user_name};

/// Seeds a database at `version` with rows the later checks expect to survive upgrading.
/// When adding migration N+1, add an arm for version N that writes rows in version N's schema.
async fn seed(store: &Store, version: i64) {
    match version {
        0 => {}
        1 => store
            .execute_script(
                "INSERT INTO users (name, admin, created) VALUES ('seeded', TRUE, 1700000000000000);
                 INSERT INTO servers (user_id, name, status, user_options)
                 SELECT id, 'gpu', 'stopped', '{\"size\": 2}' FROM users WHERE name = 'seeded';
                 INSERT INTO services (name, admin) VALUES ('seeded-service', TRUE);",
            )
            .await
            .unwrap(),
        // Versions 3 to 7 add tables and columns only; the same rows suit them all.
        2..=6 => store
            .execute_script(
                "INSERT INTO users (name, admin, created) VALUES ('seeded', TRUE, 1700000000000000);
                 INSERT INTO servers (user_id, name, status, user_options, display_name)
                 SELECT id, 'gpu', 'stopped', '{\"size\": 2}', '' FROM users WHERE name = 'seeded';
                 INSERT INTO groups (name, properties) VALUES ('seeded-group', '{}');
                 INSERT INTO services (name, admin) VALUES ('seeded-service', TRUE);",
            )
            .await
            .unwrap(),
        other => panic!("no seed data for schema version {other}; add it to seed()"),
    }
}

async fn check_upgraded(store: &Store, from: i64) {
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    if from >= 1 {
        let seeded = store.get_user(&user_name("seeded")).await.unwrap().unwrap();
        assert!(seeded.admin);
        assert_eq!(seeded.created.timestamp(), 1_700_000_000);
        // Version 2 gave servers a display name; existing ones get an empty one.
        let gpu = hubfleet_types::ServerName::parse("gpu").unwrap();
        let server = store.get_server(seeded.id, &gpu).await.unwrap().unwrap();
        assert_eq!(server.display_name, "");
        assert_eq!(server.user_options["size"], 2);
        store
            .create_groups(&["after-upgrade".to_string()], &["seeded".to_string()])
            .await
            .unwrap();
        // Version 4 added shares: the seeded server can be shared with the new group.
        let group = store.get_group("after-upgrade").await.unwrap().unwrap();
        let share = store
            .grant_share(
                server.id,
                hubfleet_store::ShareWith::Group(group.id),
                &["access:servers!server=seeded/gpu".to_string()],
                hubfleet_types::now(),
            )
            .await
            .unwrap();
        assert_eq!(share.server.owner, "seeded");
    }
    // Version 6 counts the users already there.
    let everyone = hubfleet_store::UserQuery {
        limit: 1,
        ..Default::default()
    };
    let (_, total) = store.query_user_page(&everyone, true).await.unwrap();
    assert_eq!(total, Some(store.count_users().await.unwrap()));
    // Version 7: services already there came from the configuration.
    if from >= 1 {
        let service = store.get_service("seeded-service").await.unwrap().unwrap();
        assert!(service.from_config && service.admin && service.display);
        assert!(service.info.is_empty() && service.url.is_none());
    }
    // The upgraded schema works for writes across tables.
    let user = store
        .create_user(&user_name("after-upgrade"), false)
        .await
        .unwrap();
    store.delete_user(user.id).await.unwrap();
}

async fn reopen_is_idempotent_and_newer_schema_is_refused(url: &str) {
    let store = Store::open(url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    store.create_user(&user_name("kept"), false).await.unwrap();
    store.close().await;

    let store = Store::open(url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert!(store.get_user(&user_name("kept")).await.unwrap().is_some());
    // Pretend a newer hubfleet migrated this database.
    store
        .execute_script(
            "INSERT INTO hubfleet_schema (version, description, applied_at) VALUES (999999, 'future', 0)",
        )
        .await
        .unwrap();
    store.close().await;
    let err = Store::open(url).await.unwrap_err();
    assert!(matches!(err, StoreError::Migration(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_upgrades_from_every_version() {
    for from in 0..SCHEMA_VERSION {
        // A separate file per starting version.
        let (_dir, url) = sqlite_url();
        let old = Store::open_at_version(&url, from).await.unwrap();
        seed(&old, from).await;
        old.close().await;
        let store = Store::open(&url).await.unwrap();
        check_upgraded(&store, from).await;
        store.close().await;
    }
}

#[tokio::test]
async fn sqlite_reopen_and_newer_schema() {
    let (_dir, url) = sqlite_url();
    reopen_is_idempotent_and_newer_schema_is_refused(&url).await;
}

#[tokio::test]
async fn postgres_upgrades_from_every_version() {
    for from in 0..SCHEMA_VERSION {
        let Some((admin_url, url, name)) = postgres_url("postgres_upgrades").await else {
            return;
        };
        let old = Store::open_at_version(&url, from).await.unwrap();
        seed(&old, from).await;
        old.close().await;
        let store = Store::open(&url).await.unwrap();
        check_upgraded(&store, from).await;
        store.close().await;
        drop_postgres_schema(&admin_url, &name).await;
    }
}

#[tokio::test]
async fn postgres_reopen_and_newer_schema() {
    let Some((admin_url, url, name)) = postgres_url("postgres_reopen").await else {
        return;
    };
    reopen_is_idempotent_and_newer_schema_is_refused(&url).await;
    drop_postgres_schema(&admin_url, &name).await;
}
