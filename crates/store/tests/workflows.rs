//! Workflow repositories (`workflows`, `workflow_versions`, `workflow_runs`, `workflow_node_runs`,
//! `tool_workflow_providers`), run on SQLite and (when configured) PostgreSQL. See `support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::on_each_backend;
use toolplane_store::{NewNodeRun, RunOutcome, StoreError, WorkflowProviderFields};

const DSL: &str = "app: {name: demo, mode: workflow}\n";

#[tokio::test]
async fn workflows_versions_and_runs_are_tenant_scoped() {
    on_each_backend(|store| async move {
        let a = store.tenants().create("a").await.unwrap().id;
        let b = store.tenants().create("b").await.unwrap().id;
        let repo = store.workflows();

        let wf = repo.insert(&a, "user-1", "demo", "a demo", DSL).await.unwrap();
        assert_eq!(wf.name, "demo");
        assert_eq!(repo.list(&a).await.unwrap().len(), 1);
        assert!(repo.list(&b).await.unwrap().is_empty());
        assert!(repo.get(&b, &wf.id).await.unwrap().is_none());
        assert!(matches!(
            repo.update(&b, &wf.id, "x", "", DSL).await,
            Err(StoreError::NotFound { .. })
        ));
        let updated = repo.update(&a, &wf.id, "renamed", "d", "app: {}\n").await.unwrap();
        assert_eq!(updated.name, "renamed");
        assert_eq!(updated.dsl, "app: {}\n");

        // Versions count up per workflow; the latest is the highest.
        assert!(repo.latest_version(&a, &wf.id).await.unwrap().is_none());
        let v1 = repo.publish(&a, &wf.id, "one").await.unwrap();
        let v2 = repo.publish(&a, &wf.id, "two").await.unwrap();
        assert_eq!((v1.version.as_str(), v2.version.as_str()), ("1", "2"));
        assert_eq!(repo.latest_version(&a, &wf.id).await.unwrap().unwrap().dsl, "two");
        assert_eq!(repo.version(&a, &wf.id, "1").await.unwrap().unwrap().dsl, "one");
        assert!(repo.version(&b, &wf.id, "1").await.unwrap().is_none());
        assert!(matches!(
            repo.publish(&b, &wf.id, "x").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(repo.versions(&a, &wf.id).await.unwrap().len(), 2);

        // A run with two node records.
        let run = repo.start_run(&a, &wf.id, "2", r#"{"x":1}"#, "user-1").await.unwrap();
        assert_eq!(run.status, "running");
        for (i, node) in ["start", "end"].into_iter().enumerate() {
            repo.add_node_run(
                &a,
                &run.id,
                &NewNodeRun {
                    node_index: i as i64,
                    node_id: node.into(),
                    node_type: node.into(),
                    title: node.to_uppercase(),
                    status: "succeeded".into(),
                    inputs: "{}".into(),
                    outputs: Some(r#"{"y":2}"#.into()),
                    error: None,
                    elapsed_ms: 1.5,
                },
            )
            .await
            .unwrap();
        }
        assert!(repo.add_node_run(&b, &run.id, &NewNodeRun::default()).await.is_err());
        repo.finish_run(
            &a,
            &run.id,
            &RunOutcome {
                status: "succeeded".into(),
                outputs: Some(r#"{"y":2}"#.into()),
                error: None,
                elapsed_ms: 12.25,
            },
        )
        .await
        .unwrap();
        let runs = repo.runs(&a, &wf.id, 10).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, "succeeded");
        assert_eq!(runs[0].elapsed_ms, 12.25);
        assert!(runs[0].finished_at.is_some());
        assert!(repo.runs(&b, &wf.id, 10).await.unwrap().is_empty());
        let nodes = repo.node_runs(&a, &run.id).await.unwrap();
        assert_eq!(
            nodes.iter().map(|n| n.node_id.as_str()).collect::<Vec<_>>(),
            ["start", "end"]
        );
        assert_eq!(nodes[1].title, "END");
        assert!(repo.node_runs(&b, &run.id).await.unwrap().is_empty());

        // Deleting takes versions, runs and node records along.
        assert!(!repo.delete(&b, &wf.id).await.unwrap());
        assert!(repo.delete(&a, &wf.id).await.unwrap());
        assert!(repo.get(&a, &wf.id).await.unwrap().is_none());
        assert!(repo.run(&a, &run.id).await.unwrap().is_none());
        assert!(repo.latest_version(&a, &wf.id).await.unwrap().is_none());
    })
    .await;
}

fn fields(name: &str, version: &str) -> WorkflowProviderFields {
    WorkflowProviderFields {
        name: name.into(),
        label: format!("{name} label"),
        icon: r##"{"content":"🤖","background":"#FFEAD5"}"##.into(),
        version: version.into(),
        description: "does things".into(),
        parameter_configuration: r#"[{"name":"q","description":"","form":"llm"}]"#.into(),
        privacy_policy: String::new(),
    }
}

#[tokio::test]
async fn workflow_providers_are_unique_by_name_and_app_per_tenant() {
    on_each_backend(|store| async move {
        let a = store.tenants().create("a").await.unwrap().id;
        let b = store.tenants().create("b").await.unwrap().id;
        let repo = store.workflow_providers();

        let tool = repo.insert(&a, "user-1", "wf-1", &fields("lookup", "1")).await.unwrap();
        assert_eq!(tool.app_id, "wf-1");
        assert_eq!(tool.version, "1");
        assert!(matches!(
            repo.insert(&a, "user-1", "wf-2", &fields("lookup", "1")).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            repo.insert(&a, "user-1", "wf-1", &fields("other", "1")).await,
            Err(StoreError::Conflict { .. })
        ));
        // Another tenant may reuse both.
        repo.insert(&b, "user-2", "wf-1", &fields("lookup", "1")).await.unwrap();

        assert_eq!(repo.get_by_app(&a, "wf-1").await.unwrap().unwrap().id, tool.id);
        assert_eq!(repo.get_by_name(&a, "lookup").await.unwrap().unwrap().id, tool.id);
        assert!(repo.get(&b, &tool.id).await.unwrap().is_none());

        let updated = repo.update(&a, &tool.id, &fields("lookup2", "2")).await.unwrap();
        assert_eq!((updated.name.as_str(), updated.version.as_str()), ("lookup2", "2"));
        assert!(matches!(
            repo.update(&b, &tool.id, &fields("x", "1")).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(repo.list(&a).await.unwrap().len(), 1);
        assert!(!repo.delete(&b, &tool.id).await.unwrap());
        assert!(repo.delete(&a, &tool.id).await.unwrap());
        assert!(repo.list(&a).await.unwrap().is_empty());
        assert_eq!(repo.list(&b).await.unwrap().len(), 1);
    })
    .await;
}
