//! Concurrent writers: no "database is locked", no lost writes, concurrent migration at open.

use hubfleet_store::Store;
use hubfleet_types::ServerName;

use crate::harness::{drop_postgres_schema, postgres_url, sqlite_url, store_test, user_name};

store_test!(fifty_parallel_writers_all_succeed, |store| {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Each task mixes writes (a user, a server transition, activity) with reads.
                let user = store
                    .create_user(&user_name(&format!("user{i}")), false)
                    .await?;
                let server = store
                    .begin_spawn(
                        user.id,
                        &ServerName::default_server(),
                        &serde_json::json!({}),
                    )
                    .await?;
                store.set_server_running(server.id).await?;
                store
                    .touch_user_activity(user.id, hubfleet_types::now())
                    .await?;
                store.count_users().await?;
                store.list_users(0, 10).await?;
                Ok::<_, hubfleet_store::StoreError>(user.id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().expect("no concurrent write fails"));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert_eq!(store.count_users().await.unwrap(), 50);
    assert_eq!(store.list_active_servers().await.unwrap().len(), 50);
});

store_test!(parallel_bulk_creates_do_not_duplicate, |store| {
    // Overlapping batches race to create the same names; each name is created exactly once.
    let names: Vec<_> = (0..100).map(|i| user_name(&format!("u{i:03}"))).collect();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let names = names.clone();
            tokio::spawn(async move { store.create_users(&names, false).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap().unwrap().len();
    }
    assert_eq!(created, 100);
    assert_eq!(store.count_users().await.unwrap(), 100);
});

async fn open_concurrently(url: &str) {
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("concurrent open succeeds"));
    }
    for store in &stores {
        assert_eq!(
            store.schema_version().await.unwrap(),
            hubfleet_store::SCHEMA_VERSION
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_open_migrates_once() {
    let (_dir, url) = sqlite_url();
    open_concurrently(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_open_migrates_once() {
    let Some((admin_url, url, name)) = postgres_url("postgres_concurrent_open").await else {
        return;
    };
    open_concurrently(&url).await;
    drop_postgres_schema(&admin_url, &name).await;
}

/// The hub runs store calls inside axum handlers and spawned tasks, which need `Send` futures.
/// This only has to compile; the futures are dropped without being polled.
#[test]
fn store_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let (_dir, url) = sqlite_url();
    assert_send(Store::open(&url));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(Store::open(&url)).unwrap();
    let names = [user_name("a")];
    assert_send(store.create_users(&names, false));
    assert_send(store.begin_spawn(1, &ServerName::default_server(), &serde_json::Value::Null));
    assert_send(store.delete_oauth_client("c"));
    assert_send(store.purge_expired(hubfleet_types::now()));
    assert_send(store.find_session("h", hubfleet_types::now()));
    runtime.block_on(store.close());
}
