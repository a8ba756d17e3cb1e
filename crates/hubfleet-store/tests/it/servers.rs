//! Servers: the spawn lifecycle, conflicts, listing and activity.

use hubfleet_store::{ServerStatus, StoreError};
use hubfleet_types::{ServerName, SpawnerState};
use serde_json::json;

use crate::harness::{at, now_micros, store_test, user_name};

fn server_name(name: &str) -> ServerName {
    ServerName::parse(name).unwrap()
}

store_test!(spawn_lifecycle, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let default = ServerName::default_server();
    assert_eq!(store.get_server(alice.id, &default).await.unwrap(), None);

    let before = now_micros();
    let spawning = store
        .begin_spawn(alice.id, &default, &json!({"profile": "small"}))
        .await
        .unwrap();
    assert_eq!(spawning.status, ServerStatus::Spawning);
    assert_eq!(spawning.user_id, alice.id);
    assert!(spawning.name.is_default());
    assert!(spawning.started.unwrap() >= before);
    assert_eq!(spawning.url, None);
    assert_eq!(spawning.state, SpawnerState::default());
    assert_eq!(spawning.user_options, json!({"profile": "small"}));

    let err = store
        .begin_spawn(alice.id, &default, &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let state = SpawnerState(json!({"pid": 4242, "port": 41234}));
    store
        .set_server_launched(spawning.id, "http://127.0.0.1:41234", &state)
        .await
        .unwrap();
    let launched = store.get_server(alice.id, &default).await.unwrap().unwrap();
    assert_eq!(launched.status, ServerStatus::Spawning);
    assert_eq!(launched.url.as_deref(), Some("http://127.0.0.1:41234"));
    assert_eq!(launched.state, state);

    store.set_server_running(spawning.id).await.unwrap();
    let running = store.get_server_by_id(spawning.id).await.unwrap().unwrap();
    assert_eq!(running.status, ServerStatus::Running);
    assert!(running.last_activity.unwrap() >= before);
    let active = store.list_active_servers().await.unwrap();
    assert_eq!(active, vec![(alice.clone(), running.clone())]);
    let err = store
        .begin_spawn(alice.id, &default, &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    store.set_server_stopping(spawning.id).await.unwrap();
    let stopping = store.get_server_by_id(spawning.id).await.unwrap().unwrap();
    assert_eq!(stopping.status, ServerStatus::Stopping);
    assert_eq!(store.list_active_servers().await.unwrap().len(), 1);
    let err = store
        .begin_spawn(alice.id, &default, &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    store.set_server_stopped(spawning.id).await.unwrap();
    let stopped = store.get_server_by_id(spawning.id).await.unwrap().unwrap();
    assert_eq!(stopped.status, ServerStatus::Stopped);
    assert_eq!(stopped.url, None);
    assert_eq!(stopped.state, SpawnerState::default());
    assert_eq!(stopped.started, None);
    assert!(store.list_active_servers().await.unwrap().is_empty());

    // Spawning again reuses the row and replaces the options.
    let again = store
        .begin_spawn(alice.id, &default, &json!({"profile": "large"}))
        .await
        .unwrap();
    assert_eq!(again.id, spawning.id);
    assert_eq!(again.status, ServerStatus::Spawning);
    assert_eq!(again.user_options, json!({"profile": "large"}));
    assert!(again.started.is_some());
});

store_test!(begin_spawn_for_missing_user_is_not_found, |store| {
    let err = store
        .begin_spawn(12345, &ServerName::default_server(), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
});

store_test!(named_servers_are_listed_per_user, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let bob = store.create_user(&user_name("bob"), false).await.unwrap();
    for name in ["gpu", "", "cpu-1"] {
        store
            .begin_spawn(alice.id, &server_name(name), &json!({}))
            .await
            .unwrap();
    }
    let bobs = store
        .begin_spawn(bob.id, &server_name("gpu"), &json!({}))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_user_servers(alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.as_str().to_string())
        .collect();
    assert_eq!(names, ["", "cpu-1", "gpu"]);
    assert_eq!(
        store.list_user_servers(bob.id).await.unwrap(),
        vec![bobs.clone()]
    );

    let active = store.list_active_servers().await.unwrap();
    assert_eq!(active.len(), 4);
    assert!(
        active
            .iter()
            .all(|(user, server)| user.id == server.user_id)
    );
    let bob_entry = active.iter().find(|(_, s)| s.id == bobs.id).unwrap();
    assert_eq!(bob_entry.0, bob);
});

store_test!(touch_server_activity_only_moves_forward, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let server = store
        .begin_spawn(alice.id, &ServerName::default_server(), &json!({}))
        .await
        .unwrap();
    store
        .touch_server_activity(server.id, at(100))
        .await
        .unwrap();
    store
        .touch_server_activity(server.id, at(10))
        .await
        .unwrap();
    let get = || store.get_server_by_id(server.id);
    assert_eq!(get().await.unwrap().unwrap().last_activity, Some(at(100)));
    store
        .touch_server_activity(server.id, at(101))
        .await
        .unwrap();
    assert_eq!(get().await.unwrap().unwrap().last_activity, Some(at(101)));
});

store_test!(delete_server_removes_row, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let server = store
        .begin_spawn(alice.id, &server_name("gpu"), &json!({}))
        .await
        .unwrap();
    store.delete_server(server.id).await.unwrap();
    assert_eq!(
        store
            .get_server(alice.id, &server_name("gpu"))
            .await
            .unwrap(),
        None
    );
    for result in [
        store.delete_server(server.id).await,
        store.set_server_running(server.id).await,
        store.set_server_stopping(server.id).await,
        store.set_server_stopped(server.id).await,
        store
            .set_server_launched(server.id, "http://x", &SpawnerState::default())
            .await,
    ] {
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    }
});
