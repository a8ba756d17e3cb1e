//! Groups, memberships, role assignments, and the `GET /users` query (filters, sorting, paging,
//! visibility) that pages in SQL.

use hubfleet_store::{
    RoleHolder, ServerStatus, StoreError, UserQuery, UserSort, UserState, Visibility,
};
use hubfleet_types::ServerName;

use crate::harness::{at, store_test, user_name};

fn names(users: &[hubfleet_store::User]) -> Vec<&str> {
    users.iter().map(|u| u.name.as_str()).collect()
}

store_test!(groups_members_roles_and_properties, |store| {
    let names_in = ["alice", "bob", "carol"].map(user_name);
    let users = store.create_users(&names_in, false).await.unwrap();
    let created = store
        .create_groups(&["physics".into(), "chem".into()], &["alice".into()])
        .await
        .unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].users, vec!["alice"]);
    let err = store
        .create_groups(&["math".into(), "physics".into()], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        store.get_group("math").await.unwrap().is_none(),
        "a conflicting bulk create creates nothing"
    );
    let err = store
        .create_groups(&["math".into()], &["nobody".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    let physics = store.get_group("physics").await.unwrap().unwrap();
    store
        .change_group_members(physics.id, &["bob".into(), "carol".into()], true)
        .await
        .unwrap();
    store
        .change_group_members(physics.id, &["alice".into()], false)
        .await
        .unwrap();
    store
        .set_group_properties(physics.id, &serde_json::json!({"lab": 3}))
        .await
        .unwrap();
    store
        .set_roles(RoleHolder::Group(physics.id), &["grader".into()])
        .await
        .unwrap();
    let physics = store.get_group("physics").await.unwrap().unwrap();
    assert_eq!(physics.users, vec!["bob", "carol"]);
    assert_eq!(physics.properties["lab"], 3);
    assert_eq!(physics.roles, vec!["grader"]);

    store
        .set_user_groups(users[0].id, &["chem".into(), "bio".into()])
        .await
        .unwrap();
    store
        .set_roles(RoleHolder::User(users[0].id), &["teacher".into()])
        .await
        .unwrap();
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let groups = store.groups_of_users(&ids).await.unwrap();
    assert_eq!(groups[&users[0].id], vec!["bio", "chem"]);
    assert_eq!(groups[&users[1].id], vec!["physics"]);
    let roles = store.roles_of_users(&ids).await.unwrap();
    assert_eq!(roles[&users[0].id], vec!["teacher"]);
    assert!(!roles.contains_key(&users[1].id));
    let via_groups = store.group_roles_of_users(&ids).await.unwrap();
    assert_eq!(via_groups[&users[2].id], vec!["grader"]);

    let (page, total) = store.list_groups(0, 2, None).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(
        page.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        vec!["bio", "chem"]
    );
    let (page, total) = store
        .list_groups(0, 10, Some(&["physics".to_string()]))
        .await
        .unwrap();
    assert_eq!((page.len(), total), (1, 1));
    assert_eq!(page[0].users, vec!["bob", "carol"]);

    store.delete_group(physics.id).await.unwrap();
    assert!(
        store
            .groups_of_users(&[users[1].id])
            .await
            .unwrap()
            .is_empty()
    );
});

store_test!(config_roles_create_missing_users_and_groups, |store| {
    store
        .grant_config_role("grader", &["dora".into()], &["tas".into()])
        .await
        .unwrap();
    // Granting again is idempotent.
    store
        .grant_config_role("grader", &["dora".into()], &["tas".into()])
        .await
        .unwrap();
    let dora = store.get_user(&user_name("dora")).await.unwrap().unwrap();
    assert_eq!(
        store.roles_of_users(&[dora.id]).await.unwrap()[&dora.id],
        vec!["grader"]
    );
    assert_eq!(
        store.get_group("tas").await.unwrap().unwrap().roles,
        vec!["grader"]
    );
});

store_test!(user_query_filters_sorts_and_pages_in_sql, |store| {
    let all = ["amy", "bert", "cara", "dan_x", "dan%y"].map(user_name);
    let users = store.create_users(&all, false).await.unwrap();
    store
        .touch_user_activity(users[1].id, at(10))
        .await
        .unwrap();
    store.touch_user_activity(users[2].id, at(5)).await.unwrap();
    let running = store
        .begin_spawn(
            users[0].id,
            &ServerName::default_server(),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    store.set_server_running(running.id).await.unwrap();
    store
        .begin_spawn(
            users[1].id,
            &ServerName::default_server(),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    store
        .create_groups(&["g".into()], &["cara".into()])
        .await
        .unwrap();

    let run = |query: UserQuery| async move { store.query_users(&query).await.unwrap() };
    let everyone = UserQuery {
        limit: 100,
        ..Default::default()
    };
    let (page, total) = run(everyone.clone()).await;
    assert_eq!((names(&page).len(), total), (5, 5));

    let (page, total) = run(UserQuery {
        limit: 2,
        offset: 1,
        ..everyone.clone()
    })
    .await;
    assert_eq!((names(&page), total), (vec!["bert", "cara"], 5));

    for (state, expected) in [
        (UserState::Ready, vec!["amy"]),
        (UserState::Active, vec!["amy", "bert"]),
        (UserState::Inactive, vec!["cara", "dan_x", "dan%y"]),
    ] {
        let (page, total) = run(UserQuery {
            state: Some(state),
            ..everyone.clone()
        })
        .await;
        assert_eq!(names(&page), expected, "{state:?}");
        assert_eq!(total, expected.len() as i64);
    }

    // `%` and `_` in the filter are literal characters, and matching ignores case.
    let (page, _) = run(UserQuery {
        name_filter: Some("N%".into()),
        ..everyone.clone()
    })
    .await;
    assert_eq!(names(&page), vec!["dan%y"]);
    let (page, _) = run(UserQuery {
        name_filter: Some("_".into()),
        ..everyone.clone()
    })
    .await;
    assert_eq!(names(&page), vec!["dan_x"]);

    // Never-active users first ascending, last descending, on both backends.
    let (page, _) = run(UserQuery {
        sort: UserSort::LastActivity,
        ..everyone.clone()
    })
    .await;
    assert_eq!(names(&page)[3..], ["cara", "bert"]);
    let (page, _) = run(UserQuery {
        sort: UserSort::LastActivity,
        descending: true,
        ..everyone.clone()
    })
    .await;
    assert_eq!(names(&page)[..2], ["bert", "cara"]);
    let (page, _) = run(UserQuery {
        sort: UserSort::Name,
        descending: true,
        limit: 1,
        ..everyone.clone()
    })
    .await;
    assert_eq!(names(&page), vec!["dan_x"]);

    let (page, total) = run(UserQuery {
        visible: Some(Visibility {
            names: vec!["amy".into()],
            groups: vec!["g".into()],
        }),
        ..everyone.clone()
    })
    .await;
    assert_eq!((names(&page), total), (vec!["amy", "cara"], 2));

    let servers = store
        .list_servers_for_users(&[users[0].id, users[1].id, users[2].id], true)
        .await
        .unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0].status, ServerStatus::Running);
});

store_test!(named_servers_create_rename_and_users_rename, |store| {
    let alice = store.create_user(&user_name("alice"), false).await.unwrap();
    let gpu = ServerName::parse("gpu").unwrap();
    let server = store
        .create_server(alice.id, &gpu, "GPU box", &serde_json::json!({"size": 2}))
        .await
        .unwrap();
    assert_eq!(server.status, ServerStatus::Stopped);
    assert_eq!(server.display_name, "GPU box");
    let err = store
        .create_server(alice.id, &gpu, "", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let cpu = ServerName::parse("cpu").unwrap();
    store
        .update_server(server.id, &cpu, "CPU", &serde_json::json!({}))
        .await
        .unwrap();
    let renamed = store.get_server(alice.id, &cpu).await.unwrap().unwrap();
    assert_eq!(renamed.display_name, "CPU");
    store.create_user(&user_name("bob"), false).await.unwrap();
    let err = store
        .rename_user(alice.id, &user_name("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    store
        .rename_user(alice.id, &user_name("alicia"))
        .await
        .unwrap();
    assert!(
        store
            .get_user(&user_name("alicia"))
            .await
            .unwrap()
            .is_some()
    );
});

store_test!(
    user_details_bring_servers_groups_and_roles_of_a_page_in_order,
    |store| {
        let all = ["zoe", "amy", "bo"].map(user_name);
        let users = store.create_users(&all, true).await.unwrap();
        let (zoe, amy, bo) = (&users[0], &users[1], &users[2]);
        let default = ServerName::default_server();
        let gpu = ServerName::parse("gpu").unwrap();
        let running = store
            .begin_spawn(zoe.id, &gpu, &serde_json::json!({"size": 2}))
            .await
            .unwrap();
        store.set_server_running(running.id).await.unwrap();
        let stopped = store
            .begin_spawn(zoe.id, &default, &serde_json::json!({}))
            .await
            .unwrap();
        store.set_server_stopped(stopped.id).await.unwrap();
        store
            .create_groups(&["chem".into(), "bio".into()], &["zoe".into(), "bo".into()])
            .await
            .unwrap();
        for group in ["chem", "bio"] {
            let id = store.get_group(group).await.unwrap().unwrap().id;
            // Both groups grant `grader`: it is listed once.
            store
                .set_roles(RoleHolder::Group(id), &["grader".into()])
                .await
                .unwrap();
        }
        store
            .set_roles(
                RoleHolder::User(zoe.id),
                &["teacher".into(), "author".into()],
            )
            .await
            .unwrap();

        // In the order given (not by id), with only servers not stopped unless asked.
        let details = store
            .user_details(vec![bo.clone(), zoe.clone(), amy.clone()], false)
            .await
            .unwrap();
        let order: Vec<&str> = details.iter().map(|d| d.user.name.as_str()).collect();
        assert_eq!(order, ["bo", "zoe", "amy"]);
        let zoe_details = &details[1];
        assert_eq!(zoe_details.user, *zoe);
        assert_eq!(zoe_details.servers.len(), 1);
        assert_eq!(zoe_details.servers[0].name, gpu);
        assert_eq!(zoe_details.servers[0].status, ServerStatus::Running);
        assert_eq!(zoe_details.servers[0].user_options["size"], 2);
        assert_eq!(zoe_details.groups, ["bio", "chem"]);
        assert_eq!(zoe_details.roles, ["author", "teacher"]);
        assert_eq!(zoe_details.group_roles, ["grader"]);
        assert_eq!(details[0].groups, ["bio", "chem"]);
        assert!(details[0].roles.is_empty());
        assert_eq!(
            (details[2].servers.len(), details[2].groups.len()),
            (0, 0),
            "amy has nothing"
        );
        assert!(details[2].group_roles.is_empty());

        let with_stopped = store.user_details(vec![zoe.clone()], true).await.unwrap();
        let servers: Vec<&str> = with_stopped[0]
            .servers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            servers,
            ["", "gpu"],
            "ordered by name, the default server first"
        );

        let by_name = store
            .user_details_by_name(&user_name("zoe"), false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&by_name, zoe_details);
        assert_eq!(
            store
                .user_details_by_name(&user_name("nobody"), true)
                .await
                .unwrap(),
            None
        );
        assert!(
            store
                .user_details(Vec::new(), true)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

store_test!(
    user_page_total_follows_creates_and_deletes_and_is_optional,
    |store| {
        let everyone = UserQuery {
            limit: 2,
            ..Default::default()
        };
        let total =
            |query: UserQuery| async move { store.query_user_page(&query, true).await.unwrap().1 };
        assert_eq!(total(everyone.clone()).await, Some(0), "an empty table");
        let names: Vec<_> = (0..5).map(|i| user_name(&format!("t{i}"))).collect();
        let users = store.create_users(&names, false).await.unwrap();
        store
            .create_user(&user_name("single"), false)
            .await
            .unwrap();
        // Existing names in a bulk create are skipped and not counted.
        store.create_users(&names[..2], false).await.unwrap();
        assert_eq!(total(everyone.clone()).await, Some(6));
        store.delete_user(users[0].id).await.unwrap();
        assert_eq!(total(everyone.clone()).await, Some(5));
        // Past the end there is no row to carry the total; it is still given.
        let past_end = UserQuery {
            offset: 10,
            ..everyone.clone()
        };
        let (page, past_total) = store.query_user_page(&past_end, true).await.unwrap();
        assert_eq!((page.len(), past_total), (0, Some(5)));
        let filtered = UserQuery {
            name_filter: Some("t".into()),
            offset: 10,
            ..everyone.clone()
        };
        assert_eq!(total(filtered).await, Some(4));
        // Without the total, only the page.
        let (page, none) = store.query_user_page(&everyone, false).await.unwrap();
        assert_eq!((page.len(), none), (2, None));
        assert_eq!(store.count_users().await.unwrap(), 5);
    }
);
