//! Credentials of builtin (and later plugin) providers: several per provider and tenant, one default, secret
//! fields encrypted with the tenant's key, masked in every response (Dify's `BuiltinToolManageService`).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use toolplane_core::{
    CredentialStore, CredentialType, ResolvedCredential, ToolError, ToolProvider, secret_field_names,
    validate_credentials_format,
};
use toolplane_secrets::{decrypt_fields, encrypt_fields, mask_credentials, merge_hidden};
use toolplane_store::{BuiltinCredentialRecord, BuiltinCredentialUpdate, NewBuiltinCredential, Store};

use crate::error::ApiError;
use crate::oauth::OAuth;
use crate::tenant_keys::TenantKeys;

/// Dify's cap on credentials per provider and tenant.
pub const MAX_CREDENTIALS_PER_PROVIDER: i64 = 100;
/// Dify's cap on credential names.
pub const MAX_NAME_CHARS: usize = 30;

/// A credential as the console shows it (`ToolProviderCredentialApiEntity`), secrets masked.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub credential_type: CredentialType,
    pub is_default: bool,
    pub credentials: Map<String, Value>,
}

/// Stores, reads and resolves provider credentials.
pub struct Credentials {
    store: Store,
    keys: Arc<TenantKeys>,
    /// Refreshes expiring `oauth2` credentials when a runtime resolves them.
    oauth: Option<Arc<OAuth>>,
}

impl Credentials {
    /// A credential service over the store and the tenant keys.
    pub fn new(store: Store, keys: Arc<TenantKeys>) -> Self {
        Self {
            store,
            keys,
            oauth: None,
        }
    }

    /// Like [`Self::new`], refreshing `oauth2` credentials through `oauth` 60 s before they expire.
    pub fn with_oauth(store: Store, keys: Arc<TenantKeys>, oauth: Arc<OAuth>) -> Self {
        Self {
            store,
            keys,
            oauth: Some(oauth),
        }
    }

    /// Stores the tokens of a completed OAuth authorization as a new `oauth2` credential named `AUTH n`.
    pub async fn add_oauth(
        &self,
        tenant_id: &str,
        user_id: &str,
        provider: &dyn ToolProvider,
        credentials: Map<String, Value>,
        expires_at: i64,
    ) -> Result<CredentialView, ApiError> {
        let repo = self.store.builtin_credentials();
        let existing = repo.list(tenant_id, provider.id()).await?;
        if existing.len() as i64 >= MAX_CREDENTIALS_PER_PROVIDER {
            return Err(ApiError::invalid(format!(
                "you have reached the maximum number of providers for {}",
                provider.id()
            )));
        }
        let kind = CredentialType::OAuth2;
        let schema = provider.entity().credentials_schema_for(kind);
        let encrypted = self.encrypt(tenant_id, schema, &credentials).await?;
        let row = repo
            .insert(&NewBuiltinCredential {
                tenant_id: tenant_id.to_owned(),
                user_id: user_id.to_owned(),
                provider: provider.id().to_owned(),
                name: next_default_name(kind, &existing),
                encrypted_credentials: Value::Object(encrypted),
                credential_type: kind.as_str().to_owned(),
                expires_at,
                is_default: existing.is_empty(),
            })
            .await?;
        self.view(tenant_id, provider, row).await
    }

    /// Every credential of the provider, default first, secrets masked.
    pub async fn list(&self, tenant_id: &str, provider: &dyn ToolProvider) -> Result<Vec<CredentialView>, ApiError> {
        let rows = self.store.builtin_credentials().list(tenant_id, provider.id()).await?;
        let mut views = Vec::with_capacity(rows.len());
        for (index, row) in rows.into_iter().enumerate() {
            let mut view = self.view(tenant_id, provider, row).await?;
            // The first row in `is_default DESC, created_at ASC` order is the one runtimes use.
            view.is_default = index == 0;
            views.push(view);
        }
        Ok(views)
    }

    /// The default credential, masked, if any.
    pub async fn default_view(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
    ) -> Result<Option<CredentialView>, ApiError> {
        Ok(self.list(tenant_id, provider).await?.into_iter().next())
    }

    /// Adds a credential (Dify's `add_builtin_tool_provider`).
    pub async fn add(
        &self,
        tenant_id: &str,
        user_id: &str,
        provider: &dyn ToolProvider,
        credentials: Map<String, Value>,
        name: Option<String>,
        kind: CredentialType,
    ) -> Result<CredentialView, ApiError> {
        let entity = provider.entity();
        if !entity.needs_credentials() {
            return Err(ApiError::invalid(format!(
                "provider {:?} does not need credentials",
                provider.id()
            )));
        }
        if !entity.supported_credential_types().contains(&kind) {
            return Err(ApiError::invalid(format!(
                "provider {:?} does not support {kind} credentials",
                provider.id()
            )));
        }
        let repo = self.store.builtin_credentials();
        let existing = repo.list(tenant_id, provider.id()).await?;
        if existing.len() as i64 >= MAX_CREDENTIALS_PER_PROVIDER {
            return Err(ApiError::invalid(format!(
                "you have reached the maximum number of providers for {}",
                provider.id()
            )));
        }
        let name = match name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
            Some(name) => check_name(name)?,
            None => next_default_name(kind, &existing),
        };
        if existing.iter().any(|row| row.name == name) {
            return Err(ApiError::invalid(format!(
                "the credential name '{name}' is already used"
            )));
        }
        let schema = entity.credentials_schema_for(kind);
        let credentials = validate_credentials_format(provider.id(), schema, credentials)?;
        if kind.is_editable() {
            provider.validate_credentials(&credentials).await?;
        }
        let encrypted = self.encrypt(tenant_id, schema, &credentials).await?;
        let row = repo
            .insert(&NewBuiltinCredential {
                tenant_id: tenant_id.to_owned(),
                user_id: user_id.to_owned(),
                provider: provider.id().to_owned(),
                name,
                encrypted_credentials: Value::Object(encrypted),
                credential_type: kind.as_str().to_owned(),
                expires_at: -1,
                // The first credential becomes the default; later ones are added beside it.
                is_default: existing.is_empty(),
            })
            .await?;
        self.view(tenant_id, provider, row).await
    }

    /// Renames a credential and, for API-key credentials, replaces its values (`[__HIDDEN__]` keeps a secret).
    pub async fn update(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        credential_id: &str,
        credentials: Option<Map<String, Value>>,
        name: Option<String>,
    ) -> Result<(), ApiError> {
        let repo = self.store.builtin_credentials();
        let row = self.row(tenant_id, provider, credential_id).await?;
        let kind = row_type(&row)?;
        let mut update = BuiltinCredentialUpdate::default();
        if let Some(name) = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
            let name = check_name(name)?;
            let siblings = repo.list(tenant_id, provider.id()).await?;
            if siblings.iter().any(|r| r.name == name && r.id != row.id) {
                return Err(ApiError::invalid(format!(
                    "the credential name '{name}' is already used"
                )));
            }
            update.name = Some(name);
        }
        if let Some(new_values) = credentials {
            if !kind.is_editable() {
                return Err(ApiError::invalid(format!(
                    "{kind} credentials cannot be edited; authorize again instead"
                )));
            }
            let schema = provider.entity().credentials_schema_for(kind);
            let secrets = secret_field_names(schema);
            let stored = self.decrypt_row(tenant_id, schema, &row).await?;
            let merged = merge_hidden(new_values, &stored, &secrets);
            let validated = validate_credentials_format(provider.id(), schema, merged)?;
            provider.validate_credentials(&validated).await?;
            update.encrypted_credentials = Some(Value::Object(self.encrypt(tenant_id, schema, &validated).await?));
        }
        repo.update(tenant_id, &row.id, &update).await?;
        Ok(())
    }

    /// Deletes a credential.
    pub async fn delete(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        credential_id: &str,
    ) -> Result<(), ApiError> {
        let row = self.row(tenant_id, provider, credential_id).await?;
        self.store.builtin_credentials().delete(tenant_id, &row.id).await?;
        Ok(())
    }

    /// Makes a credential the provider's default.
    pub async fn set_default(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        credential_id: &str,
    ) -> Result<(), ApiError> {
        let row = self.row(tenant_id, provider, credential_id).await?;
        self.store
            .builtin_credentials()
            .set_default(tenant_id, provider.id(), &row.id)
            .await?;
        Ok(())
    }

    async fn row(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        id: &str,
    ) -> Result<BuiltinCredentialRecord, ApiError> {
        self.store
            .builtin_credentials()
            .get_by_id(tenant_id, id)
            .await?
            .filter(|row| row.provider == provider.id())
            .ok_or_else(|| ApiError::not_found(format!("credential {id:?} not found for provider {:?}", provider.id())))
    }

    async fn view(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        row: BuiltinCredentialRecord,
    ) -> Result<CredentialView, ApiError> {
        let kind = row_type(&row)?;
        let schema = provider.entity().credentials_schema_for(kind);
        let decrypted = self.decrypt_row(tenant_id, schema, &row).await?;
        Ok(CredentialView {
            id: row.id,
            name: row.name,
            provider: row.provider,
            credential_type: kind,
            is_default: row.is_default,
            credentials: mask_credentials(&decrypted, &secret_field_names(schema)),
        })
    }

    async fn encrypt(
        &self,
        tenant_id: &str,
        schema: &[toolplane_core::ProviderConfig],
        credentials: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiError> {
        let key = self.keys.private_key(tenant_id).await?;
        encrypt_fields(credentials, &secret_field_names(schema), key.public_key())
            .map_err(|e| ApiError::invalid(e.to_string()))
    }

    async fn decrypt_row(
        &self,
        tenant_id: &str,
        schema: &[toolplane_core::ProviderConfig],
        row: &BuiltinCredentialRecord,
    ) -> Result<Map<String, Value>, ApiError> {
        let Value::Object(stored) = &row.encrypted_credentials else {
            return Err(ApiError::internal(format!(
                "credential {} is not a JSON object",
                row.id
            )));
        };
        let key = self.keys.private_key(tenant_id).await?;
        decrypt_fields(stored, &secret_field_names(schema), &key)
            .map_err(|e| ApiError::internal(format!("credential {}: {e}", row.id)))
    }
}

#[async_trait]
impl CredentialStore for Credentials {
    async fn credential(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        credential_id: Option<&str>,
    ) -> Result<Option<ResolvedCredential>, ToolError> {
        let repo = self.store.builtin_credentials();
        let row = match credential_id {
            Some(id) => repo
                .get_by_id(tenant_id, id)
                .await
                .map_err(internal)?
                .filter(|r| r.provider == provider.id()),
            None => repo.default_for(tenant_id, provider.id()).await.map_err(internal)?,
        };
        let Some(row) = row else { return Ok(None) };
        let kind = row_type(&row).map_err(|e| ToolError::Internal(e.message))?;
        let schema = provider.entity().credentials_schema_for(kind);
        let mut credentials = self
            .decrypt_row(tenant_id, schema, &row)
            .await
            .map_err(|e| ToolError::Internal(e.message))?;
        if kind == CredentialType::OAuth2
            && OAuth::needs_refresh(row.expires_at)
            && let Some(oauth) = &self.oauth
        {
            // Refresh before expiry (Dify: 60 s margin) and save the new tokens.
            let tokens = oauth.refresh(tenant_id, provider, &credentials).await?;
            let encrypted = self
                .encrypt(tenant_id, schema, &tokens.credentials)
                .await
                .map_err(|e| ToolError::Internal(e.message))?;
            let update = BuiltinCredentialUpdate {
                encrypted_credentials: Some(Value::Object(encrypted)),
                expires_at: Some(tokens.expires_at),
                ..BuiltinCredentialUpdate::default()
            };
            repo.update(tenant_id, &row.id, &update).await.map_err(internal)?;
            credentials = tokens.credentials;
        }
        Ok(Some(ResolvedCredential {
            id: row.id,
            credential_type: kind,
            credentials,
        }))
    }
}

fn internal(error: toolplane_store::StoreError) -> ToolError {
    ToolError::Internal(error.to_string())
}

fn row_type(row: &BuiltinCredentialRecord) -> Result<CredentialType, ApiError> {
    row.credential_type
        .parse()
        .map_err(|e: String| ApiError::internal(format!("credential {}: {e}", row.id)))
}

fn check_name(name: String) -> Result<String, ApiError> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "the credential name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(name)
}

/// `"{API KEY|AUTH} {n+1}"` where n is the largest numeric suffix among same-type names.
fn next_default_name(kind: CredentialType, existing: &[BuiltinCredentialRecord]) -> String {
    let prefix = kind.display_name();
    let highest = existing
        .iter()
        .filter(|row| row.credential_type == kind.as_str())
        .filter_map(|row| row.name.strip_prefix(prefix)?.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("{prefix} {}", highest + 1)
}
