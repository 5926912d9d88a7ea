//! MCP repositories (`tool_mcp_providers`, `mcp_oauth_states`, `mcp_servers`), run on SQLite and (when configured)
//! PostgreSQL. See `support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::on_each_backend;
use toolplane_store::{McpOAuthStateRecord, McpProviderFields, McpProviderState, McpServerFields, StoreError};

fn fields(name: &str, identifier: &str, hash: &str) -> McpProviderFields {
    McpProviderFields {
        name: name.into(),
        server_identifier: identifier.into(),
        server_url: format!("cipher-{hash}"),
        server_url_hash: hash.into(),
        icon: Some("🔧".into()),
        timeout: 30.0,
        sse_read_timeout: 300.5,
        encrypted_headers: Some(r#"{"X-Key":"cipher"}"#.into()),
    }
}

#[tokio::test]
async fn mcp_providers_are_unique_and_tenant_scoped() {
    on_each_backend(|store| async move {
        let a = store.tenants().create("a").await.unwrap().id;
        let b = store.tenants().create("b").await.unwrap().id;
        let repo = store.mcp_providers();

        let row = repo.insert(&a, "u", &fields("one", "srv-1", "h1"), None).await.unwrap();
        assert!(!row.authed);
        assert_eq!(row.tools, "[]");
        assert_eq!(row.sse_read_timeout, 300.5);
        // Each of name, URL hash and identifier is unique per tenant.
        for dup in [
            fields("one", "x", "hx"),
            fields("y", "srv-1", "hy"),
            fields("z", "w", "h1"),
        ] {
            assert!(matches!(
                repo.insert(&a, "u", &dup, None).await,
                Err(StoreError::Conflict { .. })
            ));
        }
        // Another tenant may reuse all three.
        repo.insert(&b, "u", &fields("one", "srv-1", "h1"), None).await.unwrap();

        assert_eq!(repo.get_by_identifier(&a, "srv-1").await.unwrap().unwrap().id, row.id);
        assert_eq!(repo.get_by_url_hash(&a, "h1").await.unwrap().unwrap().id, row.id);
        assert_eq!(repo.get_by_name(&a, "one").await.unwrap().unwrap().id, row.id);
        assert!(repo.get(&b, &row.id).await.unwrap().is_none());

        let state = McpProviderState {
            authed: true,
            encrypted_credentials: Some("cipher-tokens".into()),
            tools: r#"[{"name":"t"}]"#.into(),
        };
        assert!(repo.set_state(&b, &row.id, &state).await.is_err());
        let updated = repo.set_state(&a, &row.id, &state).await.unwrap();
        assert!(updated.authed);
        assert_eq!(updated.encrypted_credentials.as_deref(), Some("cipher-tokens"));

        let renamed = repo.update(&a, &row.id, &fields("two", "srv-2", "h2")).await.unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.server_identifier.as_str()),
            ("two", "srv-2")
        );
        assert!(renamed.authed, "updating console fields keeps the connection state");
        assert_eq!(repo.list(&a).await.unwrap().len(), 1);

        assert!(!repo.delete(&b, &row.id).await.unwrap());
        assert!(repo.delete(&a, &row.id).await.unwrap());
        assert!(repo.list(&a).await.unwrap().is_empty());
        assert_eq!(repo.list(&b).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn oauth_states_are_single_use_and_expire() {
    on_each_backend(|store| async move {
        let a = store.tenants().create("a").await.unwrap().id;
        let provider = store
            .mcp_providers()
            .insert(&a, "u", &fields("one", "srv-1", "h1"), None)
            .await
            .unwrap();
        let states = store.mcp_oauth_states();
        let record = |state: &str, expires_at: i64| McpOAuthStateRecord {
            state: state.into(),
            tenant_id: a.clone(),
            provider_id: provider.id.clone(),
            code_verifier: "v".into(),
            discovery: "{}".into(),
            client_info: "c".into(),
            redirect_uri: "http://cb".into(),
            expires_at,
        };
        let far = i64::MAX / 2;
        states.insert(&record("s1", far)).await.unwrap();
        assert!(matches!(
            states.insert(&record("s1", far)).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(states.take("s1").await.unwrap().unwrap(), record("s1", far));
        assert!(states.take("s1").await.unwrap().is_none(), "a state is single-use");
        states.insert(&record("old", 1)).await.unwrap();
        assert!(
            states.take("old").await.unwrap().is_none(),
            "an expired state is refused"
        );
        // Deleting the provider drops its pending states.
        states.insert(&record("s2", far)).await.unwrap();
        store.mcp_providers().delete(&a, &provider.id).await.unwrap();
        assert!(states.take("s2").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn mcp_servers_have_global_codes_and_rotate() {
    on_each_backend(|store| async move {
        let a = store.tenants().create("a").await.unwrap().id;
        let b = store.tenants().create("b").await.unwrap().id;
        let repo = store.mcp_servers();
        let f = |name: &str| McpServerFields {
            name: name.into(),
            description: "d".into(),
            status: "active".into(),
            entries: "[]".into(),
        };
        let s = repo.insert(&a, &f("time"), "code-1", Some("hash")).await.unwrap();
        assert_eq!(s.api_key_hash.as_deref(), Some("hash"));
        assert!(matches!(
            repo.insert(&b, &f("other"), "code-1", None).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            repo.insert(&a, &f("time"), "code-2", None).await,
            Err(StoreError::Conflict { .. })
        ));
        repo.insert(&b, &f("time"), "code-b", None).await.unwrap();
        assert_eq!(repo.get_by_code("code-1").await.unwrap().unwrap().tenant_id, a);
        assert!(repo.get(&b, &s.id).await.unwrap().is_none());
        assert_eq!(repo.get_by_name(&a, "time").await.unwrap().unwrap().id, s.id);

        let mut g = f("time");
        g.status = "inactive".into();
        assert_eq!(repo.update(&a, &s.id, &g).await.unwrap().status, "inactive");
        assert!(repo.update(&b, &s.id, &g).await.is_err());

        let rotated = repo.rotate(&a, &s.id, "code-3", None).await.unwrap();
        assert_eq!(rotated.server_code, "code-3");
        assert!(rotated.api_key_hash.is_none());
        assert!(repo.get_by_code("code-1").await.unwrap().is_none());
        assert_eq!(repo.list(&a).await.unwrap().len(), 1);
        assert!(repo.delete(&a, &s.id).await.unwrap());
        assert!(repo.get_by_code("code-3").await.unwrap().is_none());
    })
    .await;
}
