//! Repository tests, run on SQLite and (when configured) PostgreSQL. See `support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::on_each_backend;
use toolplane_store::{
    BuiltinCredentialUpdate, CREDENTIAL_TYPE_API_KEY, NEVER_EXPIRES, NewBuiltinCredential, NewToolFile, Store,
    StoreError,
};

fn hash(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

fn cred(tenant: &str, provider: &str, name: &str) -> NewBuiltinCredential {
    NewBuiltinCredential {
        tenant_id: tenant.into(),
        user_id: "user-1".into(),
        provider: provider.into(),
        name: name.into(),
        encrypted_credentials: json!({"api_key": format!("enc-{name}")}),
        credential_type: CREDENTIAL_TYPE_API_KEY.into(),
        expires_at: NEVER_EXPIRES,
        is_default: false,
    }
}

#[tokio::test]
async fn tenants_create_find_update_delete() {
    on_each_backend(|store| async move {
        let t = store.tenants();
        let a = t.create("acme").await.unwrap();
        let b = t.create("beta").await.unwrap();
        assert_eq!(a.encrypt_public_key, None);
        assert_eq!(t.get(&a.id).await.unwrap().unwrap(), a);
        assert_eq!(t.get("missing").await.unwrap(), None);
        assert_eq!(t.find_by_name("beta").await.unwrap().unwrap().id, b.id);
        assert_eq!(t.find_by_name("nobody").await.unwrap(), None);
        let ids: Vec<_> = t.list().await.unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&a.id) && ids.contains(&b.id));

        t.set_public_key(&a.id, "-----BEGIN PUBLIC KEY-----").await.unwrap();
        assert_eq!(
            t.get(&a.id).await.unwrap().unwrap().encrypt_public_key.as_deref(),
            Some("-----BEGIN PUBLIC KEY-----")
        );
        assert!(t.set_public_key("missing", "k").await.unwrap_err().is_not_found());
        assert!(matches!(
            t.create("  ").await,
            Err(StoreError::Invalid { field: "name", .. })
        ));

        // Deleting a tenant cascades to its rows (this also proves foreign keys are enforced on SQLite).
        let c = store
            .builtin_credentials()
            .insert(&cred(&a.id, "time", "k1"))
            .await
            .unwrap();
        assert!(t.delete(&a.id).await.unwrap());
        assert!(!t.delete(&a.id).await.unwrap());
        assert_eq!(store.builtin_credentials().get_by_id(&a.id, &c.id).await.unwrap(), None);
        assert_eq!(store.builtin_credentials().count(&a.id, "time").await.unwrap(), 0);

        // A credential for a tenant that does not exist is rejected by the foreign key.
        assert!(
            store
                .builtin_credentials()
                .insert(&cred("ghost", "time", "k"))
                .await
                .is_err()
        );
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_scoped_and_unique() {
    on_each_backend(|store| async move {
        let t1 = store.tenants().create("one").await.unwrap();
        let t2 = store.tenants().create("two").await.unwrap();
        let keys = store.api_keys();

        let admin = keys.create(None, "root", &hash(1), "tp-admin").await.unwrap();
        assert!(admin.is_admin());
        let k1 = keys.create(Some(&t1.id), "ci", &hash(2), "tp-abcde").await.unwrap();
        let k2 = keys.create(Some(&t2.id), "ci", &hash(3), "tp-fghij").await.unwrap();

        let err = keys.create(Some(&t2.id), "dup", &hash(2), "tp-x").await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    field: "key_hash",
                    value: None,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            keys.create(None, "bad", "ABC", "tp").await,
            Err(StoreError::Invalid { field: "key_hash", .. })
        ));
        assert!(matches!(
            keys.create(None, "bad", &hash(9), "").await,
            Err(StoreError::Invalid {
                field: "key_prefix",
                ..
            })
        ));

        assert_eq!(keys.find_by_hash(&hash(2)).await.unwrap().unwrap(), k1);
        assert_eq!(keys.find_by_hash(&hash(7)).await.unwrap(), None);
        assert_eq!(keys.list(None).await.unwrap(), vec![admin.clone()]);
        assert_eq!(keys.list(Some(&t1.id)).await.unwrap(), vec![k1.clone()]);
        assert_eq!(keys.list(Some(&t2.id)).await.unwrap(), vec![k2.clone()]);

        assert_eq!(k1.last_used_at, None);
        keys.touch_last_used(&k1.id).await.unwrap();
        assert!(
            keys.find_by_hash(&hash(2))
                .await
                .unwrap()
                .unwrap()
                .last_used_at
                .is_some()
        );

        // Another tenant (or the admin scope) cannot delete t1's key.
        assert!(!keys.delete(Some(&t2.id), &k1.id).await.unwrap());
        assert!(!keys.delete(None, &k1.id).await.unwrap());
        assert!(!keys.delete(Some(&t1.id), &admin.id).await.unwrap());
        assert!(keys.delete(Some(&t1.id), &k1.id).await.unwrap());
        assert_eq!(keys.find_by_hash(&hash(2)).await.unwrap(), None);
        assert!(keys.delete(None, &admin.id).await.unwrap());
        assert_eq!(keys.list(None).await.unwrap(), vec![]);
    })
    .await;
}

#[tokio::test]
async fn builtin_credentials_names_are_unique_per_tenant_and_provider() {
    on_each_backend(|store| async move {
        let t1 = store.tenants().create("one").await.unwrap().id;
        let t2 = store.tenants().create("two").await.unwrap().id;
        let creds = store.builtin_credentials();

        let first = creds.insert(&cred(&t1, "time", "API KEY 1")).await.unwrap();
        assert_eq!(first.encrypted_credentials, json!({"api_key": "enc-API KEY 1"}));
        assert_eq!(first.credential_type, "api-key");
        assert_eq!(first.expires_at, -1);
        assert!(!first.is_default);

        let err = creds.insert(&cred(&t1, "time", "API KEY 1")).await.unwrap_err();
        match &err {
            StoreError::Conflict { field, value, .. } => {
                assert_eq!(*field, "name");
                assert_eq!(value.as_deref(), Some("API KEY 1"));
            }
            other => panic!("expected a name conflict, got {other:?}"),
        }
        assert!(err.to_string().contains("API KEY 1"), "{err}");
        // Same name is fine for another provider or another tenant.
        creds
            .insert(&cred(&t1, "langgenius/google/google", "API KEY 1"))
            .await
            .unwrap();
        creds.insert(&cred(&t2, "time", "API KEY 1")).await.unwrap();
        assert_eq!(creds.count(&t1, "time").await.unwrap(), 1);

        // Renaming onto a taken name conflicts too.
        let second = creds.insert(&cred(&t1, "time", "API KEY 2")).await.unwrap();
        let rename = BuiltinCredentialUpdate {
            name: Some("API KEY 1".into()),
            ..Default::default()
        };
        assert!(matches!(
            creds.update(&t1, &second.id, &rename).await,
            Err(StoreError::Conflict { field: "name", .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn builtin_credentials_are_tenant_isolated() {
    on_each_backend(|store| async move {
        let t1 = store.tenants().create("one").await.unwrap().id;
        let t2 = store.tenants().create("two").await.unwrap().id;
        let creds = store.builtin_credentials();
        let mine = creds.insert(&cred(&t1, "time", "k")).await.unwrap();

        assert_eq!(creds.get_by_id(&t1, &mine.id).await.unwrap().unwrap(), mine);
        assert_eq!(creds.get_by_id(&t2, &mine.id).await.unwrap(), None);
        assert_eq!(creds.list(&t2, "time").await.unwrap(), vec![]);
        assert_eq!(creds.default_for(&t2, "time").await.unwrap(), None);
        assert_eq!(creds.count(&t2, "time").await.unwrap(), 0);
        assert!(creds.list_for_tenant(&t2).await.unwrap().is_empty());
        let upd = BuiltinCredentialUpdate {
            name: Some("stolen".into()),
            ..Default::default()
        };
        assert!(creds.update(&t2, &mine.id, &upd).await.unwrap_err().is_not_found());
        assert!(
            creds
                .set_default(&t2, "time", &mine.id)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(!creds.delete(&t2, &mine.id).await.unwrap());
        assert_eq!(creds.delete_all_for_tenant(&t2).await.unwrap(), 0);

        // Untouched by all of the above.
        assert_eq!(creds.get_by_id(&t1, &mine.id).await.unwrap().unwrap(), mine);
        assert!(creds.delete(&t1, &mine.id).await.unwrap());
        assert_eq!(creds.get_by_id(&t1, &mine.id).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn builtin_credentials_order_default_and_update() {
    on_each_backend(|store| async move {
        let t1 = store.tenants().create("one").await.unwrap().id;
        let t2 = store.tenants().create("two").await.unwrap().id;
        let creds = store.builtin_credentials();

        // Many rows in quick succession share a millisecond; names descend so that neither name nor index order
        // matches insertion order. The list must still follow insertion order.
        let mut inserted = Vec::new();
        for i in (0..20).rev() {
            inserted.push(
                creds
                    .insert(&cred(&t1, "time", &format!("key-{i:02}")))
                    .await
                    .unwrap()
                    .id,
            );
        }
        creds.insert(&cred(&t1, "other", "x")).await.unwrap();
        creds.insert(&cred(&t2, "time", "key-00")).await.unwrap();

        let listed: Vec<_> = creds
            .list(&t1, "time")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(listed, inserted);
        assert_eq!(creds.default_for(&t1, "time").await.unwrap().unwrap().id, inserted[0]);
        assert_eq!(creds.count(&t1, "time").await.unwrap(), 20);

        // set_default moves the chosen row first and keeps the rest in insertion order.
        creds.set_default(&t1, "time", &inserted[7]).await.unwrap();
        let listed = creds.list(&t1, "time").await.unwrap();
        assert_eq!(listed[0].id, inserted[7]);
        assert!(listed[0].is_default);
        assert_eq!(listed.iter().filter(|c| c.is_default).count(), 1);
        let rest: Vec<_> = listed[1..].iter().map(|c| c.id.clone()).collect();
        let expected: Vec<_> = inserted.iter().filter(|id| **id != inserted[7]).cloned().collect();
        assert_eq!(rest, expected);

        // Switching the default clears the previous one.
        creds.set_default(&t1, "time", &inserted[3]).await.unwrap();
        let listed = creds.list(&t1, "time").await.unwrap();
        assert_eq!(listed[0].id, inserted[3]);
        assert_eq!(listed.iter().filter(|c| c.is_default).count(), 1);
        assert_eq!(creds.default_for(&t1, "time").await.unwrap().unwrap().id, inserted[3]);

        // A credential of another provider cannot become this provider's default; nothing changes.
        let other = creds.list(&t1, "other").await.unwrap().remove(0);
        assert!(
            creds
                .set_default(&t1, "time", &other.id)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(creds.default_for(&t1, "time").await.unwrap().unwrap().id, inserted[3]);
        assert!(!creds.get_by_id(&t1, &other.id).await.unwrap().unwrap().is_default);

        // Update changes only what is given.
        let before = creds.get_by_id(&t1, &inserted[0]).await.unwrap().unwrap();
        let after = creds
            .update(
                &t1,
                &inserted[0],
                &BuiltinCredentialUpdate {
                    encrypted_credentials: Some(json!({"api_key": "rotated"})),
                    expires_at: Some(1_900_000_000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(after.name, before.name);
        assert_eq!(after.encrypted_credentials, json!({"api_key": "rotated"}));
        assert_eq!(after.expires_at, 1_900_000_000);
        assert!(after.updated_at >= before.updated_at);
        assert_eq!(after.created_at, before.created_at);
        let renamed = creds
            .update(
                &t1,
                &inserted[0],
                &BuiltinCredentialUpdate {
                    name: Some("renamed".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(renamed.name, "renamed");
        assert_eq!(renamed.encrypted_credentials, json!({"api_key": "rotated"}));
        assert!(
            creds
                .update(&t1, "missing", &BuiltinCredentialUpdate::default())
                .await
                .unwrap_err()
                .is_not_found()
        );

        // Key rotation wipes one tenant's credentials only.
        assert_eq!(creds.list_for_tenant(&t1).await.unwrap().len(), 21);
        assert_eq!(creds.delete_all_for_tenant(&t1).await.unwrap(), 21);
        assert_eq!(creds.count(&t1, "time").await.unwrap(), 0);
        assert_eq!(creds.count(&t2, "time").await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn label_bindings_replace_and_list() {
    on_each_backend(|store| async move {
        let labels = store.labels();
        assert!(labels.list::<&str>(&[]).await.unwrap().is_empty());
        labels
            .replace("tool-a", "api", &["search", "news", "search"])
            .await
            .unwrap();
        labels.replace("tool-b", "workflow", &["image"]).await.unwrap();
        labels.replace("tool-c", "api", &["other"]).await.unwrap();

        let got: Vec<_> = labels
            .list(&["tool-a", "tool-b"])
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.tool_id, b.tool_type, b.label_name))
            .collect();
        assert_eq!(
            got,
            vec![
                ("tool-a".into(), "api".into(), "news".into()),
                ("tool-a".into(), "api".into(), "search".into()),
                ("tool-b".into(), "workflow".into(), "image".into()),
            ]
        );

        labels.replace("tool-a", "api", &["travel"]).await.unwrap();
        let got: Vec<_> = labels
            .list(&["tool-a"])
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.label_name)
            .collect();
        assert_eq!(got, vec!["travel".to_string()]);
        labels.replace::<&str>("tool-a", "api", &[]).await.unwrap();
        assert!(labels.list(&["tool-a"]).await.unwrap().is_empty());

        assert_eq!(labels.delete_for_tool("tool-b", "workflow").await.unwrap(), 1);
        assert_eq!(labels.list(&["tool-b", "tool-c"]).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn tool_files_are_tenant_scoped() {
    on_each_backend(|store| async move {
        let t1 = store.tenants().create("one").await.unwrap().id;
        let t2 = store.tenants().create("two").await.unwrap().id;
        let files = store.tool_files();
        let new = NewToolFile {
            user_id: "u".into(),
            tenant_id: t1.clone(),
            conversation_id: None,
            file_key: format!("tools/{t1}/abc.png"),
            mimetype: "image/png".into(),
            original_url: Some("https://example.com/a.png".into()),
            name: "a.png".into(),
            size: 1234,
        };
        let f = files.insert(&new).await.unwrap();
        assert_eq!(f.file_key, new.file_key);
        assert_eq!(f.size, 1234);
        assert_eq!(files.get(&t1, &f.id).await.unwrap().unwrap(), f);
        assert_eq!(files.get(&t2, &f.id).await.unwrap(), None);
        assert_eq!(files.get_for_signed_url(&f.id).await.unwrap().unwrap(), f);
        assert!(!files.delete(&t2, &f.id).await.unwrap());
        assert!(files.delete(&t1, &f.id).await.unwrap());
        assert_eq!(files.get_for_signed_url(&f.id).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn settings_round_trip() {
    on_each_backend(|store| async move {
        let s = store.settings();
        assert_eq!(s.get("admin_key_created").await.unwrap(), None);
        assert!(s.set_if_absent("admin_key_created", "1").await.unwrap());
        assert!(!s.set_if_absent("admin_key_created", "2").await.unwrap());
        assert_eq!(s.get("admin_key_created").await.unwrap().as_deref(), Some("1"));
        s.set("admin_key_created", "3").await.unwrap();
        assert_eq!(s.get("admin_key_created").await.unwrap().as_deref(), Some("3"));
        assert!(s.delete("admin_key_created").await.unwrap());
        assert!(!s.delete("admin_key_created").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn migrate_is_idempotent_and_connect_does_not_migrate() {
    on_each_backend(|store| async move {
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        store.tenants().create("after second migrate").await.unwrap();
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    // No `mode` parameter: the file is created anyway.
    let url = format!("sqlite://{}/fresh.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    let err = store.tenants().list().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Database(_)),
        "expected a missing-table error, got {err}"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url_in(dir.path());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let row = sqlx::query("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(row.get::<String, _>(0).to_lowercase(), "wal");
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let t = store.tenants().create("mem").await.unwrap();
    assert_eq!(store.tenants().get(&t.id).await.unwrap().unwrap().name, "mem");
}

#[tokio::test]
async fn bad_urls_are_explained_without_secrets() {
    let err = Store::connect("mysql://root:hunter2@localhost/db").await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    let msg = err.to_string();
    assert!(!msg.contains("hunter2") && msg.contains("***"), "{msg}");

    let options = toolplane_store::StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let err = Store::connect_with("postgres://nobody:hunter2@127.0.0.1:1/db", options)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn concurrent_writers_do_not_fail() {
    on_each_backend(|store| async move {
        let tenant = store.tenants().create("busy").await.unwrap().id;
        let mut tasks = Vec::new();
        for worker in 0..10 {
            let store = store.clone();
            let tenant = tenant.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..5 {
                    let c = store
                        .builtin_credentials()
                        .insert(&cred(&tenant, "time", &format!("w{worker}-{i}")))
                        .await
                        .unwrap();
                    store
                        .builtin_credentials()
                        .set_default(&tenant, "time", &c.id)
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let all = store.builtin_credentials().list(&tenant, "time").await.unwrap();
        assert_eq!(all.len(), 50);
        assert_eq!(all.iter().filter(|c| c.is_default).count(), 1);
        assert!(all[0].is_default);
    })
    .await;
}

#[tokio::test]
async fn accounts_belong_to_one_tenant_and_bind_keys() {
    on_each_backend(|store| async move {
        let a = store.tenants().create("a").await.unwrap();
        let b = store.tenants().create("b").await.unwrap();
        let alice = store.accounts().create(&a.id, "alice", "owner").await.unwrap();
        assert!(
            store
                .accounts()
                .create(&a.id, "alice", "normal")
                .await
                .unwrap_err()
                .is_conflict()
        );
        store.accounts().create(&b.id, "alice", "normal").await.unwrap();
        assert!(matches!(
            store.accounts().create(&a.id, "bob", "emperor").await.unwrap_err(),
            StoreError::Invalid { field: "role", .. }
        ));
        assert_eq!(store.accounts().list(&a.id).await.unwrap(), vec![alice.clone()]);
        assert_eq!(
            store
                .accounts()
                .find_by_name(&b.id, "alice")
                .await
                .unwrap()
                .unwrap()
                .tenant_id,
            b.id
        );

        let hash = "c".repeat(64);
        let key = store.api_keys().create(Some(&a.id), "k", &hash, "tp_c").await.unwrap();
        assert_eq!(key.account_id, None);
        // A key cannot be bound to another tenant's account.
        let bob_b = store.accounts().find_by_name(&b.id, "alice").await.unwrap().unwrap();
        assert!(
            store
                .api_keys()
                .set_account(&a.id, &key.id, &bob_b.id)
                .await
                .unwrap_err()
                .is_not_found()
        );
        store.api_keys().set_account(&a.id, &key.id, &alice.id).await.unwrap();
        let found = store.api_keys().find_by_hash(&hash).await.unwrap().unwrap();
        assert_eq!(found.account_id.as_deref(), Some(alice.id.as_str()));
    })
    .await;
}

#[tokio::test]
async fn api_providers_are_unique_per_tenant_and_isolated() {
    on_each_backend(|store| async move {
        let a = store.tenants().create("a").await.unwrap();
        let b = store.tenants().create("b").await.unwrap();
        let fields = toolplane_store::ApiProviderFields {
            name: "petstore".into(),
            schema: "openapi: 3.0.0".into(),
            schema_type_str: "openapi".into(),
            tools_str: "[]".into(),
            credentials_str: r#"{"auth_type":"none"}"#.into(),
            ..Default::default()
        };
        let created = store.api_providers().insert(&a.id, "u1", &fields).await.unwrap();
        assert!(
            store
                .api_providers()
                .insert(&a.id, "u1", &fields)
                .await
                .unwrap_err()
                .is_conflict()
        );
        store.api_providers().insert(&b.id, "u2", &fields).await.unwrap();

        assert_eq!(
            store
                .api_providers()
                .get_by_name(&a.id, "petstore")
                .await
                .unwrap()
                .unwrap()
                .id,
            created.id
        );
        assert!(
            store.api_providers().get(&b.id, &created.id).await.unwrap().is_none(),
            "tenant b cannot read a's row"
        );
        assert!(!store.api_providers().delete(&b.id, &created.id).await.unwrap());

        assert_eq!((created.connect_timeout, created.read_timeout), (None, None));
        let renamed = toolplane_store::ApiProviderFields {
            name: "pets".into(),
            connect_timeout: Some(2.5),
            read_timeout: Some(30.0),
            ..fields.clone()
        };
        let updated = store
            .api_providers()
            .update(&a.id, &created.id, &renamed)
            .await
            .unwrap();
        assert_eq!(updated.name, "pets");
        assert_eq!((updated.connect_timeout, updated.read_timeout), (Some(2.5), Some(30.0)));
        let read = store.api_providers().get(&a.id, &created.id).await.unwrap().unwrap();
        assert_eq!((read.connect_timeout, read.read_timeout), (Some(2.5), Some(30.0)));
        assert!(
            store
                .api_providers()
                .update(&b.id, &created.id, &renamed)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(store.api_providers().list(&a.id).await.unwrap().len(), 1);
        assert!(store.api_providers().delete(&a.id, &created.id).await.unwrap());
        assert!(store.api_providers().list(&a.id).await.unwrap().is_empty());
    })
    .await;
}
