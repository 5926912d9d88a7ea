//! The catalog: every provider a tenant can use, ordered and filtered; tool runtimes with decrypted credentials;
//! detection of tools an app references that no longer exist.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::position::Positions;
use crate::{CredentialType, Tool, ToolError, ToolProvider, ToolProviderType, ToolRuntime};

/// Where the providers of one kind come from: compiled in (builtin), a database table (api, mcp, workflow) or
/// the plugin daemon. Each provider kind registers one source with the catalog.
#[async_trait]
pub trait ProviderSource: Send + Sync {
    /// The kind of every provider this source yields.
    fn provider_type(&self) -> ToolProviderType;

    /// Every provider of this kind the tenant can see.
    async fn list(&self, tenant_id: &str) -> Result<Vec<Arc<dyn ToolProvider>>, ToolError>;

    /// One provider by id, if the tenant has it.
    async fn get(&self, tenant_id: &str, provider_id: &str) -> Result<Option<Arc<dyn ToolProvider>>, ToolError> {
        Ok(self.list(tenant_id).await?.into_iter().find(|p| p.id() == provider_id))
    }
}

/// A fixed list of providers shared by every tenant (the builtin providers).
pub struct StaticSource {
    kind: ToolProviderType,
    providers: Vec<Arc<dyn ToolProvider>>,
}

impl StaticSource {
    /// A source of the given kind over a fixed list.
    pub fn new(kind: ToolProviderType, providers: Vec<Arc<dyn ToolProvider>>) -> Self {
        Self { kind, providers }
    }
}

#[async_trait]
impl ProviderSource for StaticSource {
    fn provider_type(&self) -> ToolProviderType {
        self.kind
    }

    async fn list(&self, _tenant_id: &str) -> Result<Vec<Arc<dyn ToolProvider>>, ToolError> {
        Ok(self.providers.clone())
    }
}

/// Decrypted credentials of one provider, as stored for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedCredential {
    pub id: String,
    pub credential_type: CredentialType,
    pub credentials: Map<String, Value>,
}

/// Looks up and decrypts the credentials of builtin and plugin providers.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The credential `credential_id` of `provider`, or its default one (`is_default DESC, created_at ASC`) when
    /// `credential_id` is `None`. `Ok(None)` when there is no such credential.
    async fn credential(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        credential_id: Option<&str>,
    ) -> Result<Option<ResolvedCredential>, ToolError>;
}

/// A tool ready to invoke: its provider, the tool and the runtime holding decrypted credentials.
pub struct ResolvedTool {
    pub provider: Arc<dyn ToolProvider>,
    pub tool: Arc<dyn Tool>,
    pub runtime: ToolRuntime,
}

/// A tool an app references that no longer exists, in Dify's `deleted_tools` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTool {
    #[serde(rename = "type")]
    pub provider_type: String,
    pub tool_name: String,
    pub provider_id: String,
}

/// The tenant-facing view of every provider source.
pub struct Catalog {
    sources: Vec<Arc<dyn ProviderSource>>,
    credentials: Arc<dyn CredentialStore>,
    /// `POSITION_TOOL_*`: filters builtin and plugin providers by name, orders them with the position file.
    tool_positions: Positions,
    /// `POSITION_PROVIDER_*`: filters and orders providers of every kind by name (a toolplane extension).
    provider_positions: Positions,
}

impl Catalog {
    /// A catalog over `sources`, resolving credentials through `credentials`.
    pub fn new(
        sources: Vec<Arc<dyn ProviderSource>>,
        credentials: Arc<dyn CredentialStore>,
        tool_positions: Positions,
        provider_positions: Positions,
    ) -> Self {
        Self {
            sources,
            credentials,
            tool_positions,
            provider_positions,
        }
    }

    /// The tenant's providers of one kind, or of every kind when `kind` is `None`, filtered and in display order.
    pub async fn providers(
        &self,
        tenant_id: &str,
        kind: Option<ToolProviderType>,
    ) -> Result<Vec<Arc<dyn ToolProvider>>, ToolError> {
        let mut providers = Vec::new();
        for source in self
            .sources
            .iter()
            .filter(|s| kind.is_none_or(|k| s.provider_type() == k))
        {
            for provider in source.list(tenant_id).await? {
                if self.is_visible(provider.as_ref()) {
                    providers.push(provider);
                }
            }
        }
        // Two stable sorts: the provider trio decides first, the tool position list breaks its ties.
        self.tool_positions
            .sort_by_name(&mut providers, |p| &p.entity().identity.name);
        self.provider_positions
            .sort_by_name(&mut providers, |p| &p.entity().identity.name);
        Ok(providers)
    }

    /// One provider by kind and id. Filtered-out providers are not found, so an operator's exclusion also
    /// stops invocations.
    pub async fn provider(
        &self,
        tenant_id: &str,
        kind: ToolProviderType,
        provider_id: &str,
    ) -> Result<Arc<dyn ToolProvider>, ToolError> {
        let not_found = || ToolError::ProviderNotFound {
            provider_type: kind,
            provider: provider_id.to_owned(),
        };
        let source = self.source(kind).ok_or_else(not_found)?;
        let provider = source.get(tenant_id, provider_id).await?.ok_or_else(not_found)?;
        if !self.is_visible(provider.as_ref()) {
            return Err(not_found());
        }
        Ok(provider)
    }

    /// Resolves a tool runtime (Dify's `get_tool_runtime`): the provider, the tool, and for providers that need
    /// credentials the chosen (or default) credential, decrypted.
    pub async fn runtime(
        &self,
        tenant_id: &str,
        kind: ToolProviderType,
        provider_id: &str,
        tool_name: &str,
        credential_id: Option<&str>,
    ) -> Result<ResolvedTool, ToolError> {
        let provider = self.provider(tenant_id, kind, provider_id).await?;
        let tool = provider.tool(tool_name).await?.ok_or_else(|| ToolError::ToolNotFound {
            provider: provider_id.to_owned(),
            tool: tool_name.to_owned(),
        })?;
        let mut runtime = ToolRuntime {
            tenant_id: tenant_id.to_owned(),
            ..ToolRuntime::default()
        };
        let uses_tenant_credentials = matches!(kind, ToolProviderType::Builtin | ToolProviderType::Plugin);
        if uses_tenant_credentials && provider.entity().needs_credentials() {
            let credential = self
                .credentials
                .credential(tenant_id, provider.as_ref(), credential_id)
                .await?
                .ok_or_else(|| match credential_id {
                    Some(id) => ToolError::CredentialNotFound {
                        provider: provider_id.to_owned(),
                        id: id.to_owned(),
                    },
                    None => ToolError::CredentialsMissing {
                        provider: provider_id.to_owned(),
                    },
                })?;
            runtime.credentials = credential.credentials;
            runtime.credential_type = Some(credential.credential_type);
        }
        Ok(ResolvedTool {
            provider,
            tool,
            runtime,
        })
    }

    /// The tools an app's configuration references that no longer exist, for every provider kind (Dify checks only
    /// api and builtin). Accepts a list of tool entries, an app model config (`agent_mode.tools`), or a workflow
    /// graph (`graph.nodes` / `workflow.graph.nodes` with `data.type == "tool"`). A provider that cannot be reached
    /// right now is not reported as deleted.
    pub async fn deleted_tools(&self, tenant_id: &str, config: &Value) -> Result<Vec<DeletedTool>, ToolError> {
        let mut seen_providers: HashMap<(ToolProviderType, String), Option<Arc<dyn ToolProvider>>> = HashMap::new();
        let mut deleted = Vec::new();
        for reference in tool_references(config) {
            let Ok(kind) = reference.provider_type.parse::<ToolProviderType>() else {
                continue;
            };
            let key = (kind, reference.provider_id.clone());
            if !seen_providers.contains_key(&key) {
                let provider = match self.provider(tenant_id, kind, &reference.provider_id).await {
                    Ok(p) => Some(p),
                    Err(ToolError::ProviderNotFound { .. }) => None,
                    Err(e) => {
                        tracing::warn!(provider = %reference.provider_id, error = %e, "cannot check provider for deleted tools");
                        continue;
                    }
                };
                seen_providers.insert(key.clone(), provider);
            }
            let exists = match seen_providers.get(&key).and_then(Option::as_ref) {
                Some(provider) => match provider.tool(&reference.tool_name).await {
                    Ok(tool) => tool.is_some(),
                    Err(e) => {
                        tracing::warn!(provider = %reference.provider_id, error = %e, "cannot list tools for deleted-tool check");
                        true
                    }
                },
                None => false,
            };
            if !exists && !deleted.contains(&reference) {
                deleted.push(reference);
            }
        }
        Ok(deleted)
    }

    fn source(&self, kind: ToolProviderType) -> Option<&Arc<dyn ProviderSource>> {
        self.sources.iter().find(|s| s.provider_type() == kind)
    }

    fn is_visible(&self, provider: &dyn ToolProvider) -> bool {
        let name = &provider.entity().identity.name;
        let tool_filtered = matches!(
            provider.provider_type(),
            ToolProviderType::Builtin | ToolProviderType::Plugin
        ) && self.tool_positions.is_filtered(name);
        !tool_filtered && !self.provider_positions.is_filtered(name)
    }
}

/// Pulls `{provider_type, provider_id, tool_name}` triples out of the configuration shapes Dify uses.
fn tool_references(config: &Value) -> Vec<DeletedTool> {
    let mut out = Vec::new();
    collect_references(config, &mut out);
    out
}

fn collect_references(value: &Value, out: &mut Vec<DeletedTool>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
        Value::Object(map) => {
            if let Some(reference) = reference_from_entry(map) {
                out.push(reference);
                return;
            }
            for key in ["agent_mode", "tools", "workflow", "graph", "nodes", "data"] {
                if let Some(inner) = map.get(key) {
                    collect_references(inner, out);
                }
            }
        }
        _ => {}
    }
}

fn reference_from_entry(map: &Map<String, Value>) -> Option<DeletedTool> {
    let text = |key: &str| map.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    // Workflow nodes say `type: tool` and carry the provider type in `provider_type`; agent entries do the same.
    let provider_type = text("provider_type")?;
    Some(DeletedTool {
        provider_type: provider_type.to_owned(),
        provider_id: text("provider_id")?.to_owned(),
        tool_name: text("tool_name")?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{I18nObject, MessageStream, ToolEntity, ToolIdentity, ToolProviderEntity, ToolProviderIdentity};
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    struct NamedTool(ToolEntity);

    #[async_trait]
    impl Tool for NamedTool {
        fn entity(&self) -> &ToolEntity {
            &self.0
        }
        async fn invoke(
            &self,
            _: ToolRuntime,
            _: Map<String, Value>,
            _: CancellationToken,
        ) -> Result<MessageStream, ToolError> {
            Err(ToolError::NotSupported("test tool".into()))
        }
    }

    struct TestProvider {
        kind: ToolProviderType,
        id: String,
        entity: ToolProviderEntity,
        tools: Vec<Arc<dyn Tool>>,
    }

    #[async_trait]
    impl ToolProvider for TestProvider {
        fn provider_type(&self) -> ToolProviderType {
            self.kind
        }
        fn id(&self) -> &str {
            &self.id
        }
        fn entity(&self) -> &ToolProviderEntity {
            &self.entity
        }
        async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
            Ok(self.tools.clone())
        }
    }

    fn provider(kind: ToolProviderType, name: &str, tools: &[&str], secret: bool) -> Arc<dyn ToolProvider> {
        let identity = ToolProviderIdentity {
            author: "test".into(),
            name: name.into(),
            description: I18nObject::new(name),
            icon: "icon.svg".into(),
            icon_dark: None,
            label: I18nObject::new(name),
            tags: vec![],
        };
        let credentials_schema = if secret {
            vec![crate::ProviderConfig::new("api_key", crate::ProviderConfigType::SecretInput).required()]
        } else {
            vec![]
        };
        Arc::new(TestProvider {
            kind,
            id: name.into(),
            entity: ToolProviderEntity {
                identity,
                plugin_id: None,
                credentials_schema,
                oauth_schema: None,
            },
            tools: tools
                .iter()
                .map(|t| {
                    Arc::new(NamedTool(ToolEntity {
                        identity: ToolIdentity {
                            author: "test".into(),
                            name: (*t).into(),
                            label: I18nObject::new(*t),
                            provider: name.into(),
                            icon: None,
                        },
                        parameters: vec![],
                        description: None,
                        output_schema: Map::new(),
                        has_runtime_parameters: false,
                    })) as Arc<dyn Tool>
                })
                .collect(),
        })
    }

    struct Creds;

    #[async_trait]
    impl CredentialStore for Creds {
        async fn credential(
            &self,
            tenant_id: &str,
            _provider: &dyn ToolProvider,
            credential_id: Option<&str>,
        ) -> Result<Option<ResolvedCredential>, ToolError> {
            // Tenant "a" has one credential, "c1"; everyone else has none.
            if tenant_id != "a" || credential_id.is_some_and(|id| id != "c1") {
                return Ok(None);
            }
            Ok(Some(ResolvedCredential {
                id: "c1".into(),
                credential_type: CredentialType::ApiKey,
                credentials: Map::from_iter([("api_key".into(), json!("secret"))]),
            }))
        }
    }

    fn catalog(tool_positions: Positions) -> Catalog {
        let builtin = StaticSource::new(
            ToolProviderType::Builtin,
            vec![
                provider(ToolProviderType::Builtin, "webscraper", &["webscraper"], false),
                provider(ToolProviderType::Builtin, "keyed", &["lookup"], true),
                provider(ToolProviderType::Builtin, "time", &["current_time", "weekday"], false),
            ],
        );
        let api = StaticSource::new(
            ToolProviderType::Api,
            vec![provider(ToolProviderType::Api, "petstore", &["getPet"], false)],
        );
        Catalog::new(
            vec![Arc::new(builtin), Arc::new(api)],
            Arc::new(Creds),
            tool_positions,
            Positions::default(),
        )
    }

    fn names(list: &[Arc<dyn ToolProvider>]) -> Vec<String> {
        list.iter().map(|p| p.entity().identity.name.clone()).collect()
    }

    #[tokio::test]
    async fn lists_in_position_order_and_filters() {
        let order = crate::position::DEFAULT_BUILTIN_POSITIONS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = catalog(Positions::new("keyed", "", "", order));
        let all = c.providers("a", None).await.unwrap();
        assert_eq!(names(&all), vec!["keyed", "time", "webscraper", "petstore"]);
        let api = c.providers("a", Some(ToolProviderType::Api)).await.unwrap();
        assert_eq!(names(&api), vec!["petstore"]);

        let excluded = catalog(Positions::new("", "", "webscraper", vec![]));
        assert_eq!(
            names(&excluded.providers("a", None).await.unwrap()),
            vec!["keyed", "time", "petstore"]
        );
        let err = excluded
            .runtime("a", ToolProviderType::Builtin, "webscraper", "webscraper", None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ToolError::ProviderNotFound { .. }),
            "excluded providers cannot be invoked"
        );
    }

    #[tokio::test]
    async fn resolves_credentials_per_tenant() {
        let c = catalog(Positions::default());
        let ok = c
            .runtime("a", ToolProviderType::Builtin, "keyed", "lookup", None)
            .await
            .unwrap();
        assert_eq!(ok.runtime.credentials["api_key"], "secret");
        assert_eq!(ok.runtime.tenant_id, "a");

        let missing = c
            .runtime("b", ToolProviderType::Builtin, "keyed", "lookup", None)
            .await
            .err()
            .unwrap();
        assert!(matches!(missing, ToolError::CredentialsMissing { .. }), "{missing}");
        let wrong_id = c
            .runtime("a", ToolProviderType::Builtin, "keyed", "lookup", Some("zz"))
            .await
            .err()
            .unwrap();
        assert!(matches!(wrong_id, ToolError::CredentialNotFound { .. }));

        let no_tool = c
            .runtime("a", ToolProviderType::Builtin, "time", "nope", None)
            .await
            .err()
            .unwrap();
        assert!(no_tool.to_string().contains("tool \"nope\" not found"), "{no_tool}");
        let free = c
            .runtime("b", ToolProviderType::Builtin, "time", "weekday", None)
            .await
            .unwrap();
        assert!(free.runtime.credentials.is_empty());
    }

    #[tokio::test]
    async fn detects_deleted_tools_of_every_kind() {
        let c = catalog(Positions::default());
        let config = json!({
            "agent_mode": {"enabled": true, "tools": [
                {"provider_type": "builtin", "provider_id": "time", "tool_name": "weekday", "tool_parameters": {}},
                {"provider_type": "builtin", "provider_id": "time", "tool_name": "moon_phase", "tool_parameters": {}},
                {"provider_type": "api", "provider_id": "gone-api", "tool_name": "x", "tool_parameters": {}},
                {"provider_type": "mcp", "provider_id": "gone-mcp", "tool_name": "y", "tool_parameters": {}},
                {"provider_type": "api", "provider_id": "petstore", "tool_name": "getPet", "tool_parameters": {}},
                {"dataset": {"id": "d"}}
            ]}
        });
        let deleted = c.deleted_tools("a", &config).await.unwrap();
        let got: Vec<_> = deleted
            .iter()
            .map(|d| (d.provider_type.as_str(), d.provider_id.as_str(), d.tool_name.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("builtin", "time", "moon_phase"),
                ("api", "gone-api", "x"),
                ("mcp", "gone-mcp", "y")
            ]
        );
        assert_eq!(
            serde_json::to_value(&deleted[0]).unwrap(),
            json!({"type": "builtin", "tool_name": "moon_phase", "provider_id": "time"})
        );

        let graph = json!({"workflow": {"graph": {"nodes": [
            {"id": "1", "data": {"type": "tool", "provider_type": "workflow", "provider_id": "wf-1", "tool_name": "run"}}
        ]}}});
        assert_eq!(c.deleted_tools("a", &graph).await.unwrap().len(), 1);
    }
}
