//! Shared test harness: run a test body against SQLite (always) and PostgreSQL (when
//! `TOOLPLANE_TEST_POSTGRES_URL` is set), each on a fresh, isolated, migrated database.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use sqlx::{Connection, Executor};
use toolplane_store::{Backend, Store};

/// Environment variable naming the PostgreSQL server used by the tests.
pub const PG_ENV: &str = "TOOLPLANE_TEST_POSTGRES_URL";

/// Runs `test` on a fresh SQLite file, then on a fresh PostgreSQL schema if configured.
pub async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    // SQLite: a file in a temporary folder (sub-folder included, to exercise folder creation).
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/test.db?mode=rwc", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.migrate().await.unwrap();
    test(store.clone()).await;
    store.close().await;

    // PostgreSQL: a schema of its own, dropped afterwards even if the test panics.
    let Some(base) = std::env::var(PG_ENV).ok().filter(|v| !v.is_empty()) else {
        eprintln!(
            "skipping PostgreSQL tests: set {PG_ENV}=postgres://postgres@127.0.0.1:5432/test to run them as well"
        );
        return;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let outcome = AssertUnwindSafe(async {
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        store.migrate().await.unwrap();
        test(store.clone()).await;
        store.close().await;
    })
    .catch_unwind()
    .await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    admin.close().await.ok();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
