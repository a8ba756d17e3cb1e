//! The `native` authenticator: people sign up at `/hub/signup`; their account cannot log in until
//! an admin approves it on the admin page; wrong passwords and unapproved accounts are refused with
//! clear messages; `admin_users` are approved at sign-up.

use reqwest::StatusCode;

use crate::support::standin::{standin_server, world_readable_tempdir};
use crate::support::test_hub::{HubOptions, TestHub};
use crate::support::{Browser, hidden_input_value};

async fn sign_up(hub: &TestHub, user: &str, password: &str) -> (StatusCode, String) {
    let browser = hub.browser();
    let login = browser.get("/hub/login").await.text().await.unwrap();
    assert!(
        login.contains("id=\"signup-link\""),
        "the login page links to sign-up:
{login}"
    );
    let page = browser.get("/hub/signup").await.text().await.unwrap();
    let xsrf = hidden_input_value(&page, "_xsrf").expect("an _xsrf field");
    let response = browser
        .client()
        .post(browser.url("/hub/signup"))
        .form(&[("username", user), ("password", password), ("_xsrf", &xsrf)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn login(hub: &TestHub, user: &str, password: &str) -> (Browser, StatusCode, String) {
    let browser = hub.browser();
    let response = browser.login(user, password).await;
    let status = response.status();
    (browser, status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_up_accounts_log_in_once_an_admin_approves_them() {
    let dir = world_readable_tempdir();
    let hub = TestHub::start_with_options(HubOptions {
        cmd: Some(standin_server(dir.path(), 0.0)),
        auth_yaml: Some("auth:\n  kind: native\n  admin_users: [itnatadmin]\n"),
        ..HubOptions::default()
    })
    .await;

    // The admin named in admin_users is approved at sign-up.
    let (status, page) = sign_up(&hub, "itnatadmin", "admin password").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (admin, status, _) = login(&hub, "itnatadmin", "admin password").await;
    assert_eq!(status, StatusCode::FOUND);

    let (status, page) = sign_up(&hub, "itnatann", "ann's password").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("An administrator must approve it"), "{page}");
    let (status, page) = sign_up(&hub, "ItNatAnn", "another password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("The name itnatann is taken"), "{page}");
    let (status, page) = sign_up(&hub, "itnatbob", "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("at least 8 characters"), "{page}");

    // Not approved yet: the right password says so; a wrong one does not.
    let (_, status, page) = login(&hub, "itnatann", "ann's password").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        page.contains("waiting for an administrator&#x27;s approval")
            || page.contains("waiting for an administrator's approval"),
        "{page}"
    );
    let (_, status, page) = login(&hub, "itnatann", "wrong password").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Invalid username or password."), "{page}");
    let (_, status, _) = login(&hub, "itnatnobody", "any password").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The admin page lists the account; approving it lets ann in.
    let page = admin.get("/hub/admin").await.text().await.unwrap();
    assert!(page.contains("data-account=\"itnatann\""), "{page}");
    let xsrf = hidden_input_value(&page, "_xsrf").unwrap();
    let approve = admin
        .client()
        .post(admin.url("/hub/admin/accounts/approve"))
        .form(&[("_xsrf", xsrf.as_str()), ("name", "itnatann")])
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), StatusCode::SEE_OTHER);
    let page = admin.get("/hub/admin").await.text().await.unwrap();
    assert!(page.contains("Approved itnatann"), "{page}");
    assert!(!page.contains("data-account=\"itnatann\""), "{page}");
    let (_, status, _) = login(&hub, "itnatann", "ann's password").await;
    assert_eq!(status, StatusCode::FOUND);
    let (_, status, _) = login(&hub, "itnatann", "wrong password").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Only admins approve.
    let (ann, _, _) = login(&hub, "itnatann", "ann's password").await;
    let page = ann.get("/hub/home").await.text().await.unwrap();
    let xsrf = hidden_input_value(&page, "_xsrf").unwrap_or_default();
    let refused = ann
        .client()
        .post(ann.url("/hub/admin/accounts/approve"))
        .form(&[("_xsrf", xsrf.as_str()), ("name", "itnatbob")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_can_create_only_so_many_accounts_at_a_time() {
    let hub = TestHub::start_with_options(HubOptions {
        auth_yaml: Some("auth:\n  kind: native\n"),
        ..HubOptions::default()
    })
    .await;
    // A refused sign-up (password too short) does not count.
    let (status, _) = sign_up(&hub, "itnatshort", "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The whole limit from this address (through the proxy, as every browser comes)…
    let limit = 100;
    for n in 0..limit {
        let (status, page) = sign_up(&hub, &format!("itnatclass{n}"), "a class password").await;
        assert_eq!(status, StatusCode::OK, "sign-up {n}: {page}");
    }
    // …then the next one is refused, and said when to come back.
    let browser = hub.browser();
    let page = browser.get("/hub/signup").await.text().await.unwrap();
    let xsrf = hidden_input_value(&page, "_xsrf").expect("an _xsrf field");
    let refused = browser
        .client()
        .post(browser.url("/hub/signup"))
        .form(&[
            ("username", "itnatlate"),
            ("password", "a class password"),
            ("_xsrf", &xsrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Too many accounts were created from your address"),
        "{page}"
    );
}
