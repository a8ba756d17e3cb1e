//! Users: create, bulk create, lookup, admin flag, delete cascade, paging, activity.

use hubfleet_store::{NewSession, NewToken, OAuthCode, StoreError, TokenOwner};
use hubfleet_types::ServerName;

use crate::harness::{at, now_micros, store_test, user_name};

store_test!(create_and_get_user, |store| {
    let before = now_micros();
    let alice = store.create_user(&user_name("alice"), true).await.unwrap();
    assert_eq!(alice.name.as_str(), "alice");
    assert!(alice.admin);
    assert!(alice.created >= before, "created is set to now");
    assert_eq!(alice.last_activity, None);

    assert_eq!(
        store.get_user(&user_name("alice")).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.get_user_by_id(alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.get_user(&user_name("bob")).await.unwrap(), None);
    assert_eq!(store.get_user_by_id(alice.id + 1000).await.unwrap(), None);
});

store_test!(create_duplicate_user_conflicts, |store| {
    store.create_user(&user_name("alice"), false).await.unwrap();
    let err = store
        .create_user(&user_name("alice"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.count_users().await.unwrap(), 1);
});

store_test!(create_users_skips_existing, |store| {
    let existing = store.create_user(&user_name("bob"), true).await.unwrap();
    let names = ["alice", "bob", "carol"].map(user_name);
    let created = store.create_users(&names, false).await.unwrap();
    let created_names: Vec<&str> = created.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(created_names, ["alice", "carol"]);
    assert!(created.iter().all(|u| !u.admin));
    assert_eq!(store.count_users().await.unwrap(), 3);
    // The existing user is untouched (still admin, same id).
    assert_eq!(
        store.get_user(&user_name("bob")).await.unwrap(),
        Some(existing)
    );
    // Running it again creates nothing.
    assert!(store.create_users(&names, false).await.unwrap().is_empty());
});

store_test!(
    create_users_keeps_input_order_and_counts_repeated_names_once,
    |store| {
        // Not in name order, with a repeat: ids follow the input, each name is created once.
        let names = ["zed", "adam", "mia", "adam", "bea"].map(user_name);
        let created = store.create_users(&names, true).await.unwrap();
        let created_names: Vec<&str> = created.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(created_names, ["zed", "adam", "mia", "bea"]);
        assert!(created.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert!(created.iter().all(|u| u.admin));
        assert_eq!(store.count_users().await.unwrap(), 4);
        assert!(store.create_users(&[], false).await.unwrap().is_empty());
    }
);

store_test!(set_user_admin_updates_flag, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store.set_user_admin(alice.id, true).await.unwrap();
    assert!(store.get_user_by_id(alice.id).await.unwrap().unwrap().admin);
    store.set_user_admin(alice.id, false).await.unwrap();
    assert!(!store.get_user_by_id(alice.id).await.unwrap().unwrap().admin);
    let err = store
        .set_user_admin(alice.id + 1000, true)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
});

store_test!(delete_user_cascades, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let bob = store.create_user(&user_name("bob"), false).await.unwrap();
    let server = store
        .begin_spawn(
            alice.id,
            &ServerName::default_server(),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    for (user, hash) in [(&alice, "alice-token"), (&bob, "bob-token")] {
        store
            .insert_token(&NewToken {
                hash: hash.to_string(),
                owner: TokenOwner::User(user.id),
                scopes: vec![],
                note: String::new(),
                created: at(0),
                expires_at: None,
                session_id: None,
                oauth_client_id: None,
            })
            .await
            .unwrap();
    }
    store
        .insert_session(&NewSession {
            hash: "alice-session".to_string(),
            session_id: "sid".to_string(),
            user_id: alice.id,
            created: at(0),
            expires_at: at(3600),
        })
        .await
        .unwrap();
    store
        .insert_oauth_code(&OAuthCode {
            code_hash: "alice-code".to_string(),
            client_id: "jupyterhub-user-alice".to_string(),
            user_id: alice.id,
            redirect_uri: "http://127.0.0.1/cb".to_string(),
            scopes: vec![],
            code_challenge: None,
            code_challenge_method: None,
            session_id: None,
            expires_at: at(600),
        })
        .await
        .unwrap();

    store.delete_user(alice.id).await.unwrap();

    assert_eq!(store.get_user_by_id(alice.id).await.unwrap(), None);
    assert_eq!(store.get_server_by_id(server.id).await.unwrap(), None);
    assert_eq!(store.find_token("alice-token", at(1)).await.unwrap(), None);
    assert!(
        store
            .find_session("alice-session", at(1))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_oauth_code("alice-code", at(1))
            .await
            .unwrap()
            .is_none()
    );
    // Other users' rows survive.
    assert!(
        store
            .find_token("bob-token", at(1))
            .await
            .unwrap()
            .is_some()
    );
    let err = store.delete_user(alice.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
});

store_test!(list_users_pages_by_id_and_count, |store| {
    let names: Vec<_> = (0..25).map(|i| user_name(&format!("user{i:02}"))).collect();
    let created = store.create_users(&names, false).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 25);

    let first = store.list_users(0, 10).await.unwrap();
    let second = store.list_users(10, 10).await.unwrap();
    let last = store.list_users(20, 10).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(second.len(), 10);
    assert_eq!(last.len(), 5);
    let paged: Vec<_> = first.into_iter().chain(second).chain(last).collect();
    assert_eq!(paged, created, "pages concatenate to all users in id order");
    assert!(paged.windows(2).all(|pair| pair[0].id < pair[1].id));
    assert!(store.list_users(25, 10).await.unwrap().is_empty());
    assert!(store.list_users(0, 0).await.unwrap().is_empty());
});

store_test!(touch_user_activity_only_moves_forward, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store.touch_user_activity(alice.id, at(100)).await.unwrap();
    let last = |store: &hubfleet_store::Store| {
        let store = store.clone();
        async move {
            store
                .get_user_by_id(alice.id)
                .await
                .unwrap()
                .unwrap()
                .last_activity
        }
    };
    assert_eq!(last(store).await, Some(at(100)));
    store.touch_user_activity(alice.id, at(50)).await.unwrap();
    assert_eq!(
        last(store).await,
        Some(at(100)),
        "older activity is ignored"
    );
    store.touch_user_activity(alice.id, at(200)).await.unwrap();
    assert_eq!(last(store).await, Some(at(200)));
});
