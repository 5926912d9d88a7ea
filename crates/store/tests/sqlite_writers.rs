//! The store's own write transactions (builtin credentials' default, labels, workflow deletion) run side by side on
//! one SQLite file, more of them than the pool has connections, between reads on other connections: none fails with
//! "database is locked" and each takes effect whole. They begin `IMMEDIATE` (`Store::begin_write`); the unit test
//! next to it in `src/db.rs` shows the deferred transaction that reads first failing where this one waits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use toolplane_store::{CREDENTIAL_TYPE_API_KEY, NEVER_EXPIRES, NewBuiltinCredential, Store};

/// Writers running at once; more than the pool's 10 connections, so every connection is busy.
const WRITERS: usize = 24;
/// Transactions per writer and kind.
const ROUNDS: usize = 8;

fn cred(tenant: &str, name: &str) -> NewBuiltinCredential {
    NewBuiltinCredential {
        tenant_id: tenant.into(),
        user_id: "user-1".into(),
        provider: "time".into(),
        name: name.into(),
        encrypted_credentials: json!({"api_key": format!("enc-{name}")}),
        credential_type: CREDENTIAL_TYPE_API_KEY.into(),
        expires_at: NEVER_EXPIRES,
        is_default: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_write_transactions_on_an_sqlite_file_do_not_fail_with_database_locked() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("toolplane.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.tenants().create("acme").await.unwrap().id;
    let mut credentials = Vec::new();
    for i in 0..WRITERS {
        let row = store
            .builtin_credentials()
            .insert(&cred(&tenant, &format!("key-{i}")))
            .await
            .unwrap();
        credentials.push(row.id);
    }

    let writers = (0..WRITERS).map(|i| {
        let (store, tenant, credential) = (store.clone(), tenant.clone(), credentials[i].clone());
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Reads between the transactions keep read snapshots open on other connections, as a server does.
                store.builtin_credentials().list(&tenant, "time").await?;
                store
                    .builtin_credentials()
                    .set_default(&tenant, "time", &credential)
                    .await?;
                let labels = [format!("label-{i}"), format!("round-{round}"), "shared".to_owned()];
                store.labels().replace("shared-provider", "builtin", &labels).await?;
                store.labels().replace(&format!("provider-{i}"), "api", &labels).await?;
                let workflow = store
                    .workflows()
                    .insert(&tenant, "user-1", &format!("wf-{i}-{round}"), "", "dsl")
                    .await?;
                store.workflows().publish(&tenant, &workflow.id, "dsl").await?;
                assert!(store.workflows().delete(&tenant, &workflow.id).await?);
            }
            Ok::<(), toolplane_store::StoreError>(())
        })
    });
    let results: Vec<_> = futures::future::join_all(writers).await;
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.unwrap().err().map(|e| e.to_string()))
        .collect();
    assert!(failures.is_empty(), "{} writers failed: {failures:#?}", failures.len());

    // Every transaction took effect whole: one default, each provider's last labels, no workflow left.
    let rows = store.builtin_credentials().list(&tenant, "time").await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.is_default).count(), 1);
    let shared = store.labels().list(&["shared-provider"]).await.unwrap();
    assert_eq!(shared.len(), 3, "{shared:?}");
    for i in 0..WRITERS {
        let labels = store.labels().list(&[format!("provider-{i}")]).await.unwrap();
        let names: Vec<&str> = labels.iter().map(|l| l.label_name.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("label-{i}").as_str(),
                &format!("round-{}", ROUNDS - 1),
                "shared"
            ]
        );
    }
    assert!(store.workflows().list(&tenant).await.unwrap().is_empty());
    store.close().await;
}
