//! `toolplane oauth`: administer OAuth clients of tool providers.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Map, Value};
use toolplane_server::AppState;

/// OAuth administration.
#[derive(Subcommand)]
pub enum OauthCommand {
    /// Set the system OAuth client of a provider (used by every tenant without its own enabled client), e.g.
    /// `toolplane oauth set-system-client github -p client_id=… -p client_secret=… -p authorization_url=…
    /// -p token_url=… -p scope=repo`. Params are stored encrypted with SECRET_KEY (Dify's format).
    SetSystemClient {
        /// The provider: a builtin provider name, or `org/plugin/provider` with --plugin-id.
        provider: String,
        /// A client param as key=value (repeat).
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", required = true)]
        params: Vec<String>,
        /// The plugin id (`org/plugin`) for plugin providers; empty for builtin providers.
        #[arg(long, default_value = "")]
        plugin_id: String,
    },
    /// Remove the system OAuth client of a provider.
    DeleteSystemClient {
        provider: String,
        #[arg(long, default_value = "")]
        plugin_id: String,
    },
}

/// Runs an `oauth` subcommand against the database of `state`.
pub async fn run(command: OauthCommand, state: AppState) -> Result<()> {
    match command {
        OauthCommand::SetSystemClient {
            provider,
            params,
            plugin_id,
        } => {
            let mut map = Map::new();
            for pair in &params {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("--param {pair:?} is not KEY=VALUE");
                };
                if key.trim().is_empty() {
                    bail!("--param {pair:?} has an empty key");
                }
                map.insert(key.trim().to_owned(), Value::String(value.to_owned()));
            }
            state.oauth.set_system_client(&plugin_id, &provider, &map).await?;
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            println!(
                "system OAuth client of {provider} saved ({} params: {})",
                keys.len(),
                keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        OauthCommand::DeleteSystemClient { provider, plugin_id } => {
            if state.store.oauth_clients().delete_system(&plugin_id, &provider).await? {
                println!("system OAuth client of {provider} deleted");
            } else {
                bail!("provider {provider:?} has no system OAuth client");
            }
        }
    }
    Ok(())
}
