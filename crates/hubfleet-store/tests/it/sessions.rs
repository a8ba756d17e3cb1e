//! Browser sessions: insert, lookup with user, expiry and logout.

use hubfleet_store::{NewSession, Session, StoreError};

use crate::harness::{at, store_test, user_name};

fn session(hash: &str, user_id: i64) -> NewSession {
    NewSession {
        hash: hash.to_string(),
        session_id: format!("public-{hash}"),
        user_id,
        created: at(0),
        expires_at: at(3600),
    }
}

store_test!(insert_find_and_delete_session, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store
        .insert_session(&session("s1", alice.id))
        .await
        .unwrap();
    let (found, user) = store.find_session("s1", at(10)).await.unwrap().unwrap();
    let expected = Session {
        hash: "s1".to_string(),
        session_id: "public-s1".to_string(),
        user_id: alice.id,
        created: at(0),
        expires_at: at(3600),
    };
    assert_eq!(found, expected);
    assert_eq!(user, alice);
    assert!(store.find_session("s2", at(10)).await.unwrap().is_none());

    assert_eq!(store.delete_session("s1").await.unwrap(), Some(expected));
    assert!(store.find_session("s1", at(10)).await.unwrap().is_none());
    assert_eq!(store.delete_session("s1").await.unwrap(), None);
});

store_test!(expired_sessions_are_not_found, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store
        .insert_session(&session("s1", alice.id))
        .await
        .unwrap();
    assert!(store.find_session("s1", at(3599)).await.unwrap().is_some());
    assert!(store.find_session("s1", at(3600)).await.unwrap().is_none());
});

store_test!(delete_user_sessions_logs_out_everywhere, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let bob = store.create_user(&user_name("bob"), false).await.unwrap();
    store
        .insert_session(&session("a1", alice.id))
        .await
        .unwrap();
    store
        .insert_session(&session("a2", alice.id))
        .await
        .unwrap();
    store.insert_session(&session("b1", bob.id)).await.unwrap();
    assert_eq!(store.delete_user_sessions(alice.id).await.unwrap(), 2);
    assert!(store.find_session("a2", at(1)).await.unwrap().is_none());
    assert!(store.find_session("b1", at(1)).await.unwrap().is_some());
});

store_test!(session_insert_errors, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    store
        .insert_session(&session("s1", alice.id))
        .await
        .unwrap();
    let err = store
        .insert_session(&session("s1", alice.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = store
        .insert_session(&session("s2", alice.id + 9))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
});

#[test]
fn session_debug_hides_hash() {
    let mut new = session("cookie-hash-abc", 1);
    new.session_id = "sid-visible".to_string();
    let stored = Session {
        hash: new.hash.clone(),
        session_id: new.session_id.clone(),
        user_id: 1,
        created: at(0),
        expires_at: at(1),
    };
    let debug = format!("{new:?} {stored:?}");
    assert!(!debug.contains("cookie-hash-abc"), "{debug}");
    assert!(debug.contains("sid-visible"), "{debug}");
}
