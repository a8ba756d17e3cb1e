//! SQLite specifics: URL forms, file permissions and durability across `kill -9`.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hubfleet_store::{Backend, Store, StoreError};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::user_name;

#[tokio::test]
async fn url_forms_and_private_file_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sqlite");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.create_user(&user_name("alice"), false).await.unwrap();
    for file in ["hub.sqlite", "hub.sqlite-wal"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {mode:o}");
    }
    store.close().await;

    let store = Store::open_sqlite(&path).await.unwrap();
    assert!(store.get_user(&user_name("alice")).await.unwrap().is_some());
    store.close().await;

    for bad in ["mysql://localhost/hub", "hub.sqlite"] {
        let err = Store::open(bad).await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl), "{bad}: {err:?}");
    }
}

const CHILD_DB_VAR: &str = "HUBFLEET_STORE_DURABILITY_CHILD_DB";
const CHILD_TEST: &str = "sqlite_only::durability_child_writer";

/// Only does something when started by [`committed_writes_survive_kill_9`]: writes users one by
/// one, announcing each commit on stdout, until it is killed (or a safety limit is reached).
#[tokio::test]
async fn durability_child_writer() {
    let Ok(path) = std::env::var(CHILD_DB_VAR) else {
        return;
    };
    let store = Store::open_sqlite(std::path::Path::new(&path))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while Instant::now() < deadline && i < 1_000_000 {
        store
            .create_user(&user_name(&format!("durable{i}")), false)
            .await
            .unwrap();
        // Announce only after the commit returned, and flush so the parent sees it at once.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "committed {i}").unwrap();
        out.flush().unwrap();
        i += 1;
    }
}

#[tokio::test]
async fn committed_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sqlite");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB_VAR, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last_committed = None;
    let wait = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(n) = line.strip_prefix("committed ") {
                let n: u64 = n.parse().unwrap();
                last_committed = Some(n);
                if n >= 200 {
                    break;
                }
            }
        }
    })
    .await;
    assert!(wait.is_ok(), "child did not commit 200 users in time");
    // SIGKILL while the child is still writing.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let last = last_committed.expect("child committed something");

    let store = Store::open_sqlite(&path).await.unwrap();
    for i in 0..=last {
        assert!(
            store
                .get_user(&user_name(&format!("durable{i}")))
                .await
                .unwrap()
                .is_some(),
            "user durable{i} was reported committed but is missing after kill -9"
        );
    }
    let count = store.count_users().await.unwrap();
    assert!(
        count as u64 > last,
        "count {count} <= last committed index {last}"
    );
    store.close().await;
}
