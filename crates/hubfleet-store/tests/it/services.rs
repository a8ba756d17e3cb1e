//! Services from configuration.

use crate::harness::store_test;

store_test!(upsert_and_get_service, |store| {
    let created = store.upsert_service("cull-idle", true).await.unwrap();
    assert_eq!(created.name, "cull-idle");
    assert!(created.admin);
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
