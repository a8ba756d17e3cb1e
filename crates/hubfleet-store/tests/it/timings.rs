//! Timings for the report (bulk create, paging at 50k users). Runs only with
//! `HUBFLEET_STORE_TIMINGS=1`; prints figures and asserts only correctness, never speed.

use std::io::Write;
use std::time::{Duration, Instant};

use hubfleet_store::Store;

use crate::harness::{postgres_db, sqlite_db, user_name};

async fn measure(label: &str, store: &Store) {
    let first: Vec<_> = (0..1000)
        .map(|i| user_name(&format!("bulk{i:05}")))
        .collect();
    let started = Instant::now();
    assert_eq!(store.create_users(&first, false).await.unwrap().len(), 1000);
    let bulk_1000 = started.elapsed();

    let started = Instant::now();
    for batch in 1..50 {
        let names: Vec<_> = (batch * 1000..(batch + 1) * 1000)
            .map(|i| user_name(&format!("bulk{i:05}")))
            .collect();
        store.create_users(&names, false).await.unwrap();
    }
    let fill = started.elapsed();
    assert_eq!(store.count_users().await.unwrap(), 50_000);

    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let mut first_page = Vec::new();
    let mut last_page = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        assert_eq!(store.list_users(0, 200).await.unwrap().len(), 200);
        first_page.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(store.list_users(49_800, 200).await.unwrap().len(), 200);
        last_page.push(t.elapsed());
        let t = Instant::now();
        store.count_users().await.unwrap();
        counts.push(t.elapsed());
    }
    println!(
        "TIMING {label}: create_users(1000) {:?}; 49k more in {:?}; at 50k users (median of 21): \
         list_users(0,200) {:?}, list_users(49800,200) {:?}, count_users {:?}",
        bulk_1000,
        fill,
        median(first_page),
        median(last_page),
        median(counts)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timings() {
    if std::env::var("HUBFLEET_STORE_TIMINGS").is_err() {
        // Written to stderr directly: libtest hides `eprintln!` output of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "timings: NOT RUN (set HUBFLEET_STORE_TIMINGS=1)"
        );
        return;
    }
    let db = sqlite_db().await;
    measure("sqlite", &db.store).await;
    db.finish().await;
    if let Some(db) = postgres_db("timings").await {
        measure("postgres", &db.store).await;
        db.finish().await;
    }
}
