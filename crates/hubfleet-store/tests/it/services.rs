//! Services: from the configuration (upserted at every start) and created at runtime through the
//! REST API (with their token and OAuth client, deleted with them).

use hubfleet_store::{NewService, OAuthClient, ServiceCredentials, StoreError, TokenOwner};

use crate::harness::{at, store_test};

store_test!(upsert_and_get_service, |store| {
    let created = store.upsert_service("cull-idle", true).await.unwrap();
    assert_eq!(created.name, "cull-idle");
    assert!(created.admin);
    assert!(created.from_config);
    let updated = store.upsert_service("cull-idle", false).await.unwrap();
    assert_eq!(updated.id, created.id, "the id is stable across upserts");
    assert!(!updated.admin);
    assert_eq!(
        store.get_service("cull-idle").await.unwrap(),
        Some(updated.clone())
    );
    assert_eq!(
        store.get_service_by_id(created.id).await.unwrap(),
        Some(updated)
    );
    assert_eq!(store.get_service("other").await.unwrap(), None);
    assert_eq!(
        store.get_service_by_id(created.id + 1000).await.unwrap(),
        None
    );
});

fn runtime(name: &str) -> NewService {
    NewService {
        name: name.to_string(),
        admin: false,
        from_config: false,
        url: Some("http://127.0.0.1:9999".to_string()),
        info: serde_json::json!({ "owner": "ops" })
            .as_object()
            .cloned()
            .unwrap(),
        display: false,
        oauth_client_id: Some(format!("service-{name}")),
        oauth_no_confirm: true,
        oauth_client_allowed_scopes: vec!["read:users".to_string()],
    }
}

fn client(identifier: &str) -> OAuthClient {
    OAuthClient {
        identifier: identifier.to_string(),
        secret_hash: "secret-hash".to_string(),
        redirect_uri: "/services/x/oauth_callback".to_string(),
        description: "service x".to_string(),
        allowed_scopes: vec!["access:services!service=x".to_string()],
    }
}

store_test!(
    runtime_services_are_created_with_credentials_and_deleted_with_them,
    |store| {
        let spec = runtime("x");
        let oauth = client("service-x");
        let created = store
            .create_runtime_service(
                &spec,
                ServiceCredentials {
                    token_hash: Some("token-hash"),
                    oauth_client: Some(&oauth),
                },
                at(0),
            )
            .await
            .unwrap();
        assert!(!created.from_config);
        assert_eq!(created.url, spec.url);
        assert_eq!(created.info, spec.info);
        assert!(!created.display);
        assert!(created.oauth_no_confirm);
        assert_eq!(created.oauth_client_allowed_scopes, ["read:users"]);
        let token = store
            .find_token("token-hash", at(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(token.owner, TokenOwner::Service(created.id));
        assert_eq!(token.scopes, ["inherit"]);
        assert_eq!(
            store.get_oauth_client("service-x").await.unwrap(),
            Some(oauth.clone())
        );
        assert_eq!(
            store.list_services().await.unwrap(),
            std::slice::from_ref(&created)
        );

        // The name is taken, whichever kind of service holds it; nothing half-made is left.
        let err = store
            .create_runtime_service(&runtime("x"), ServiceCredentials::default(), at(0))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        // A token already in use fails the whole creation.
        let err = store
            .create_runtime_service(
                &runtime("y"),
                ServiceCredentials {
                    token_hash: Some("token-hash"),
                    oauth_client: None,
                },
                at(0),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(store.get_service("y").await.unwrap(), None);

        // The configuration does not take over a runtime service.
        assert_eq!(
            store
                .upsert_config_service(&NewService::from_config("x", true))
                .await
                .unwrap(),
            None
        );
        assert!(!store.get_service("x").await.unwrap().unwrap().admin);

        let deleted = store.delete_service("x").await.unwrap().unwrap();
        assert_eq!(deleted.id, created.id);
        assert_eq!(store.find_token("token-hash", at(1)).await.unwrap(), None);
        assert_eq!(store.get_oauth_client("service-x").await.unwrap(), None);
        assert_eq!(store.get_service("x").await.unwrap(), None);
        assert_eq!(store.delete_service("x").await.unwrap(), None);
    }
);
