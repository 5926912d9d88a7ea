//! The tool model of toolplane.
//!
//! This crate owns what every provider kind shares:
//! - entities whose serde shapes are identical to Dify's wire format ([`I18nObject`], [`ToolParameter`],
//!   [`ToolEntity`], [`ToolProviderEntity`], [`ProviderConfig`], [`ToolInvokeMessage`], [`ToolLabel`], …);
//! - parameter casting and validation ([`validate_and_cast`]) by Dify's rules with its bugs fixed;
//! - the [`Tool`] and [`ToolProvider`] traits and the invocation entry point [`invoke`], which streams
//!   [`ToolInvokeMessage`]s and honours a timeout and a cancellation token;
//! - the [`Catalog`]: providers of every kind per tenant, ordered and filtered ([`Positions`]), tool runtimes with
//!   decrypted credentials, and deleted-tool detection.
//!
//! It depends on no other toolplane crate: storage, secrets and HTTP come in through the [`ProviderSource`] and
//! [`CredentialStore`] traits.

mod cast;
mod catalog;
mod credentials;
mod error;
mod i18n;
mod message;
mod parameter;
pub mod position;
mod provider;
mod tool;

pub use cast::{cast_value, validate_and_cast};
pub use catalog::{
    Catalog, CredentialStore, DeletedTool, ProviderSource, ResolvedCredential, ResolvedTool, StaticSource,
};
pub use credentials::validate_credentials_format;
pub use error::ToolError;
pub use i18n::I18nObject;
pub use message::{
    BlobChunkMessage, BlobMessage, FileMessage, JsonMessage, LogMessage, LogStatus, MessagePayload,
    RetrieverResourceMessage, TextMessage, ToolInvokeMessage, VariableMessage,
};
pub use parameter::{
    ParameterAutoGenerate, ParameterOption, ParameterTemplate, ToolParameter, ToolParameterForm, ToolParameterType,
};
pub use position::Positions;
pub use provider::{
    CredentialType, OAuthSchema, ProviderConfig, ProviderConfigOption, ProviderConfigType, ToolDescription, ToolEntity,
    ToolIdentity, ToolLabel, ToolLabelEnum, ToolProviderEntity, ToolProviderIdentity, ToolProviderType,
    secret_field_names,
};
pub use tool::{
    Icon, InvokeFrom, InvokeOptions, MessageStream, Tool, ToolProvider, ToolRuntime, collect_messages, invoke,
};
