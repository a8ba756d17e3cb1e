//! Shares and share codes: granting merges scopes, revoking removes them, group shares reach
//! members, renames keep filters current, codes expire and are exchanged for shares, and
//! deleting a server takes its shares along.

use hubfleet_store::{ShareQuery, ShareWith, StoreError};
use hubfleet_types::ServerName;

use crate::harness::{at, store_test, user_name};

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

store_test!(shares_grant_revoke_list_and_reach_group_members, |store| {
    let users = store
        .create_users(&["alice", "bob", "carol"].map(user_name), false)
        .await
        .unwrap();
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let server = store
        .create_server(alice.id, &ServerName::default(), "", &serde_json::json!({}))
        .await
        .unwrap();
    let physics = store
        .create_groups(&["physics".into()], &["carol".into()])
        .await
        .unwrap()
        .remove(0);

    let access = "access:servers!server=alice/";
    let share = store
        .grant_share(
            server.id,
            ShareWith::User(bob.id),
            &scopes(&[access]),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(share.scopes, vec![access]);
    assert_eq!(share.user.as_deref(), Some("bob"));
    assert_eq!(share.server.owner, "alice");
    assert_eq!(share.created, at(0));
    // Granting again merges scopes into the same share.
    let read = "read:servers!server=alice/";
    let again = store
        .grant_share(server.id, ShareWith::User(bob.id), &scopes(&[read]), at(5))
        .await
        .unwrap();
    assert_eq!(again.id, share.id);
    assert_eq!(again.scopes, vec![access, read]);
    assert_eq!(again.created, at(0));
    store
        .grant_share(
            server.id,
            ShareWith::Group(physics.id),
            &scopes(&[access]),
            at(1),
        )
        .await
        .unwrap();

    assert_eq!(
        store.share_scopes_of_user(bob.id).await.unwrap(),
        vec![access, read]
    );
    assert_eq!(
        store.share_scopes_of_user(carol.id).await.unwrap(),
        vec![access]
    );
    assert!(
        store
            .share_scopes_of_user(alice.id)
            .await
            .unwrap()
            .is_empty()
    );

    let (page, total) = store
        .list_shares(ShareQuery::Owner(alice.id), 0, 1)
        .await
        .unwrap();
    assert_eq!((page.len(), total), (1, 2));
    let (page, total) = store
        .list_shares(ShareQuery::SharedWithUser(carol.id), 0, 10)
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(page[0].group.as_deref(), Some("physics"));
    let (_, total) = store
        .list_shares(ShareQuery::SharedWithGroup(physics.id), 0, 10)
        .await
        .unwrap();
    assert_eq!(total, 1);

    // Partial revocation keeps the rest; revoking everything deletes the share.
    let left = store
        .revoke_share(server.id, ShareWith::User(bob.id), Some(&scopes(&[read])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.scopes, vec![access]);
    assert!(
        store
            .revoke_share(server.id, ShareWith::User(bob.id), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.share_scopes_of_user(bob.id).await.unwrap().is_empty());

    // A renamed owner's shares follow the server.
    store
        .rename_user(alice.id, &user_name("alicia"))
        .await
        .unwrap();
    assert_eq!(
        store.share_scopes_of_user(carol.id).await.unwrap(),
        vec!["access:servers!server=alicia/"]
    );
    assert_eq!(store.delete_server_shares(server.id).await.unwrap(), 1);
    assert!(
        store
            .share_scopes_of_user(carol.id)
            .await
            .unwrap()
            .is_empty()
    );
});

store_test!(
    share_codes_expire_are_exchanged_and_go_with_their_server,
    |store| {
        let users = store
            .create_users(&["dora", "eve"].map(user_name), false)
            .await
            .unwrap();
        let (dora, eve) = (&users[0], &users[1]);
        let gpu = ServerName::parse("gpu").unwrap();
        let server = store
            .create_server(dora.id, &gpu, "", &serde_json::json!({}))
            .await
            .unwrap();
        let access = "access:servers!server=dora/gpu";
        let code = store
            .insert_share_code(
                server.id,
                "hash-1",
                &scopes(&[access]),
                at(0),
                Some(at(100)),
            )
            .await
            .unwrap();
        assert_eq!(code.exchange_count, 0);
        store
            .insert_share_code(server.id, "hash-2", &scopes(&[access]), at(0), Some(at(10)))
            .await
            .unwrap();
        assert!(
            store
                .find_share_code("hash-1", at(50))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .find_share_code("hash-2", at(50))
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        assert!(
            store
                .find_share_code("nope", at(0))
                .await
                .unwrap()
                .is_none()
        );
        let (codes, total) = store
            .list_share_codes(ShareQuery::Owner(dora.id), at(50), 0, 10)
            .await
            .unwrap();
        assert_eq!((codes.len(), total), (1, 1));
        let (_, total) = store
            .list_share_codes(ShareQuery::Server(server.id), at(0), 0, 10)
            .await
            .unwrap();
        assert_eq!(total, 2);

        let share = store
            .exchange_share_code(&code, eve.id, at(60))
            .await
            .unwrap();
        assert_eq!(share.user.as_deref(), Some("eve"));
        assert_eq!(share.scopes, vec![access]);
        let code = store
            .find_share_code("hash-1", at(61))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (code.exchange_count, code.last_exchanged_at),
            (1, Some(at(60)))
        );

        let err = store
            .delete_share_code(server.id, code.id + 100)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
        store.delete_share_code(server.id, code.id).await.unwrap();
        assert_eq!(store.delete_server_share_codes(server.id).await.unwrap(), 1);

        store
            .insert_share_code(server.id, "hash-3", &scopes(&[access]), at(0), None)
            .await
            .unwrap();
        store.delete_server(server.id).await.unwrap();
        assert!(
            store
                .find_share_code("hash-3", at(0))
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.share_scopes_of_user(eve.id).await.unwrap().is_empty());
    }
);
