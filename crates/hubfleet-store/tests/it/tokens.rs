//! API tokens: insert, lookup by hash, expiry, listing, revocation and activity.

use hubfleet_store::{NewToken, StoreError, TokenOwner};

use crate::harness::{at, store_test, user_name};

fn token(hash: &str, owner: TokenOwner) -> NewToken {
    NewToken {
        hash: hash.to_string(),
        owner,
        scopes: vec![
            "read:users".to_string(),
            "access:servers!user=alice".to_string(),
        ],
        note: "test token".to_string(),
        created: at(0),
        expires_at: None,
        session_id: None,
        oauth_client_id: None,
    }
}

store_test!(insert_and_find_token, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let mut new = token("hash-1", TokenOwner::User(alice.id));
    new.expires_at = Some(at(3600));
    new.session_id = Some("sid-1".to_string());
    new.oauth_client_id = Some("jupyterhub-user-alice".to_string());
    let id = store.insert_token(&new).await.unwrap();

    let found = store.find_token("hash-1", at(10)).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.owner, TokenOwner::User(alice.id));
    assert_eq!(found.scopes, new.scopes);
    assert_eq!(found.note, "test token");
    assert_eq!(found.created, at(0));
    assert_eq!(found.expires_at, Some(at(3600)));
    assert_eq!(found.last_activity, None);
    assert_eq!(found.session_id.as_deref(), Some("sid-1"));
    assert_eq!(
        found.oauth_client_id.as_deref(),
        Some("jupyterhub-user-alice")
    );
    assert_eq!(store.find_token("hash-2", at(10)).await.unwrap(), None);
});

store_test!(expired_tokens_are_not_found, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let mut new = token("expiring", TokenOwner::User(alice.id));
    new.expires_at = Some(at(100));
    store.insert_token(&new).await.unwrap();
    assert!(
        store
            .find_token("expiring", at(99))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .find_token("expiring", at(100))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_token("expiring", at(101))
            .await
            .unwrap()
            .is_none()
    );
    // Still listed, so users can see and revoke it.
    assert_eq!(store.list_user_tokens(alice.id).await.unwrap().len(), 1);
    // Purging removes it for good.
    assert_eq!(store.purge_expired(at(101)).await.unwrap(), 1);
    assert!(store.list_user_tokens(alice.id).await.unwrap().is_empty());
});

store_test!(token_insert_errors, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store
        .insert_token(&token("dup", TokenOwner::User(alice.id)))
        .await
        .unwrap();
    let err = store
        .insert_token(&token("dup", TokenOwner::User(alice.id)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    for owner in [TokenOwner::User(alice.id + 100), TokenOwner::Service(999)] {
        let err = store
            .insert_token(&token("orphan", owner))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{owner:?}: {err:?}");
    }
});

store_test!(service_tokens, |store| {
    let service = store.upsert_service("announcements", false).await.unwrap();
    let id = store
        .insert_token(&token("svc", TokenOwner::Service(service.id)))
        .await
        .unwrap();
    let found = store.find_token("svc", at(1)).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.owner, TokenOwner::Service(service.id));
    assert_eq!(store.delete_service_tokens(service.id).await.unwrap(), 1);
    assert_eq!(store.find_token("svc", at(1)).await.unwrap(), None);
    assert_eq!(store.delete_service_tokens(service.id).await.unwrap(), 0);
});

store_test!(list_and_delete_tokens, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let bob = store.create_user(&user_name("bob"), false).await.unwrap();
    let first = store
        .insert_token(&token("a1", TokenOwner::User(alice.id)))
        .await
        .unwrap();
    let second = store
        .insert_token(&token("a2", TokenOwner::User(alice.id)))
        .await
        .unwrap();
    store
        .insert_token(&token("b1", TokenOwner::User(bob.id)))
        .await
        .unwrap();
    let ids: Vec<i64> = store
        .list_user_tokens(alice.id)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [first, second]);

    store.delete_token(first).await.unwrap();
    assert_eq!(store.find_token("a1", at(1)).await.unwrap(), None);
    assert_eq!(store.list_user_tokens(alice.id).await.unwrap().len(), 1);
    let err = store.delete_token(first).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
});

store_test!(delete_tokens_by_session_and_client, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let owner = TokenOwner::User(alice.id);
    for (hash, session, client) in [
        ("s1", Some("sid-1"), None),
        ("s2", Some("sid-1"), Some("client-a")),
        ("c1", None, Some("client-a")),
        ("other", Some("sid-2"), Some("client-b")),
    ] {
        let mut new = token(hash, owner);
        new.session_id = session.map(str::to_string);
        new.oauth_client_id = client.map(str::to_string);
        store.insert_token(&new).await.unwrap();
    }
    assert_eq!(store.delete_tokens_for_session("sid-1").await.unwrap(), 2);
    assert_eq!(
        store
            .delete_tokens_for_oauth_client("client-a")
            .await
            .unwrap(),
        1
    );
    let left: Vec<String> = store
        .list_user_tokens(alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.session_id.unwrap())
        .collect();
    assert_eq!(left, ["sid-2"]);
});

store_test!(touch_token_only_moves_forward, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let id = store
        .insert_token(&token("t", TokenOwner::User(alice.id)))
        .await
        .unwrap();
    store.touch_token(id, at(50)).await.unwrap();
    store.touch_token(id, at(40)).await.unwrap();
    let found = store.find_token("t", at(60)).await.unwrap().unwrap();
    assert_eq!(found.last_activity, Some(at(50)));
    store.touch_token(id, at(70)).await.unwrap();
    let found = store.find_token("t", at(80)).await.unwrap().unwrap();
    assert_eq!(found.last_activity, Some(at(70)));
});

#[test]
fn new_token_debug_hides_hash() {
    let new = token("super-secret-hash", TokenOwner::User(1));
    let debug = format!("{new:?}");
    assert!(!debug.contains("super-secret-hash"), "{debug}");
    assert!(
        debug.contains("test token"),
        "other fields are still shown: {debug}"
    );
}

store_test!(
    a_users_oauth_tokens_for_a_client_go_together_and_others_stay,
    |store| {
        let alice = store.create_user(&user_name("alice"), false).await.unwrap();
        let bob = store.create_user(&user_name("bob"), false).await.unwrap();
        // (hash, owner, client, expires): OAuth access tokens expire; the server's own token
        // is tied to its client but never expires; a plain API token has no client.
        for (hash, owner, client, expires) in [
            ("oauth-1", alice.id, Some("service-x"), true),
            ("oauth-2", alice.id, Some("service-x"), true),
            ("server-own", alice.id, Some("service-x"), false),
            ("other-client", alice.id, Some("service-y"), true),
            ("plain", alice.id, None, false),
            ("bobs", bob.id, Some("service-x"), true),
        ] {
            let mut new = token(hash, TokenOwner::User(owner));
            new.oauth_client_id = client.map(str::to_string);
            new.expires_at = expires.then(|| at(3600));
            store.insert_token(&new).await.unwrap();
        }
        assert_eq!(
            store
                .delete_user_oauth_tokens(alice.id, "service-x")
                .await
                .unwrap(),
            2
        );
        for (hash, kept) in [
            ("oauth-1", false),
            ("oauth-2", false),
            ("server-own", true),
            ("other-client", true),
            ("plain", true),
            ("bobs", true),
        ] {
            let found = store.find_token(hash, at(1)).await.unwrap();
            assert_eq!(found.is_some(), kept, "{hash}");
        }
    }
);

store_test!(
    purging_removes_expired_share_codes_and_keeps_live_ones,
    |store| {
        let alice = store.create_user(&user_name("alice"), false).await.unwrap();
        let server = store
            .create_server(
                alice.id,
                &hubfleet_types::ServerName::default(),
                "",
                &serde_json::json!({}),
            )
            .await
            .unwrap();
        let scopes = vec!["access:servers!server=alice/".to_string()];
        for (hash, expires) in [
            ("expired", Some(at(10))),
            ("live", Some(at(100))),
            ("forever", None),
        ] {
            store
                .insert_share_code(server.id, hash, &scopes, at(0), expires)
                .await
                .unwrap();
        }
        let mut expired_token = token("expired-token", TokenOwner::User(alice.id));
        expired_token.expires_at = Some(at(20));
        store.insert_token(&expired_token).await.unwrap();
        // One share code and one token had expired by 50.
        assert_eq!(store.purge_expired(at(50)).await.unwrap(), 2);
        // Listed as of time 0, when all three codes were live: the expired one is gone from the table.
        let (codes, total) = store
            .list_share_codes(hubfleet_store::ShareQuery::Server(server.id), at(0), 0, 10)
            .await
            .unwrap();
        assert_eq!((codes.len(), total), (2, 2));
        assert!(store.list_user_tokens(alice.id).await.unwrap().is_empty());
        assert_eq!(store.purge_expired(at(50)).await.unwrap(), 0);
    }
);
