//! OAuth clients and single-use authorization codes.

use std::sync::Arc;

use hubfleet_store::{NewToken, OAuthClient, OAuthCode, TokenOwner};

use crate::harness::{at, store_test, user_name};

fn client(identifier: &str) -> OAuthClient {
    OAuthClient {
        identifier: identifier.to_string(),
        secret_hash: "client-secret-hash".to_string(),
        redirect_uri: "http://127.0.0.1:8000/user/alice/oauth_callback".to_string(),
        description: "Server at /user/alice/".to_string(),
        allowed_scopes: vec!["access:servers!server=alice/".to_string()],
    }
}

fn code(code_hash: &str, user_id: i64, client_id: &str) -> OAuthCode {
    OAuthCode {
        code_hash: code_hash.to_string(),
        client_id: client_id.to_string(),
        user_id,
        redirect_uri: "http://127.0.0.1:8000/user/alice/oauth_callback".to_string(),
        scopes: vec!["identify".to_string()],
        code_challenge: Some("pkce-challenge".to_string()),
        code_challenge_method: Some("S256".to_string()),
        session_id: Some("sid".to_string()),
        expires_at: at(600),
    }
}

store_test!(upsert_and_get_client, |store| {
    let mut alice_client = client("jupyterhub-user-alice");
    store.upsert_oauth_client(&alice_client).await.unwrap();
    assert_eq!(
        store
            .get_oauth_client("jupyterhub-user-alice")
            .await
            .unwrap(),
        Some(alice_client.clone())
    );
    alice_client.secret_hash = "rotated".to_string();
    alice_client
        .allowed_scopes
        .push("read:users:name".to_string());
    store.upsert_oauth_client(&alice_client).await.unwrap();
    assert_eq!(
        store
            .get_oauth_client("jupyterhub-user-alice")
            .await
            .unwrap(),
        Some(alice_client)
    );
    assert_eq!(store.get_oauth_client("nobody").await.unwrap(), None);
});

store_test!(delete_client_removes_its_tokens_and_codes, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store
        .upsert_oauth_client(&client("client-a"))
        .await
        .unwrap();
    store
        .upsert_oauth_client(&client("client-b"))
        .await
        .unwrap();
    for (hash, client_id) in [("ta", "client-a"), ("tb", "client-b")] {
        store
            .insert_token(&NewToken {
                hash: hash.to_string(),
                owner: TokenOwner::User(alice.id),
                scopes: vec![],
                note: String::new(),
                created: at(0),
                expires_at: None,
                session_id: None,
                oauth_client_id: Some(client_id.to_string()),
            })
            .await
            .unwrap();
    }
    store
        .insert_oauth_code(&code("ca", alice.id, "client-a"))
        .await
        .unwrap();
    store
        .insert_oauth_code(&code("cb", alice.id, "client-b"))
        .await
        .unwrap();

    store.delete_oauth_client("client-a").await.unwrap();
    assert_eq!(store.get_oauth_client("client-a").await.unwrap(), None);
    assert!(store.find_token("ta", at(1)).await.unwrap().is_none());
    assert!(store.take_oauth_code("ca", at(1)).await.unwrap().is_none());
    assert!(store.get_oauth_client("client-b").await.unwrap().is_some());
    assert!(store.find_token("tb", at(1)).await.unwrap().is_some());
    assert!(store.take_oauth_code("cb", at(1)).await.unwrap().is_some());
    // Deleting again is fine: the caller only wants it gone.
    store.delete_oauth_client("client-a").await.unwrap();
});

store_test!(codes_are_single_use, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let stored = code("c1", alice.id, "client-a");
    store.insert_oauth_code(&stored).await.unwrap();
    assert_eq!(
        store.take_oauth_code("c1", at(1)).await.unwrap(),
        Some(stored)
    );
    assert_eq!(store.take_oauth_code("c1", at(1)).await.unwrap(), None);
    assert_eq!(store.take_oauth_code("never", at(1)).await.unwrap(), None);
});

store_test!(expired_codes_are_not_returned, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store
        .insert_oauth_code(&code("late", alice.id, "client-a"))
        .await
        .unwrap();
    assert_eq!(store.take_oauth_code("late", at(600)).await.unwrap(), None);
    // An expired redemption attempt also consumes it.
    assert_eq!(store.take_oauth_code("late", at(1)).await.unwrap(), None);
});

store_test!(concurrent_redemptions_succeed_once, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    for round in 0..5 {
        let hash = format!("race-{round}");
        store
            .insert_oauth_code(&code(&hash, alice.id, "client-a"))
            .await
            .unwrap();
        let hash = Arc::new(hash);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                let hash = Arc::clone(&hash);
                tokio::spawn(async move { store.take_oauth_code(&hash, at(1)).await })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            if task.await.unwrap().unwrap().is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one redemption wins");
    }
});

#[test]
fn debug_hides_hashes_and_challenge() {
    let debug = format!("{:?} {:?}", client("c"), code("code-hash-xyz", 1, "c"));
    for secret in ["client-secret-hash", "code-hash-xyz", "pkce-challenge"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(debug.contains("S256"), "{debug}");
}
