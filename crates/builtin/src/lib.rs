//! toolplane's compiled-in ("builtin") tool providers.
//!
//! Dify ships four hardcoded providers; two of them need nothing but the process itself and are provided here,
//! declared exactly as Dify declares them (names, parameter names, types, forms, defaults, options and output
//! texts), so agents and workflows written for Dify call them unchanged:
//! - [`time`](time::PROVIDER_NAME): `current_time`, `localtime_to_timestamp`, `timestamp_to_localtime`,
//!   `timezone_conversion` and `weekday`, on the IANA time zone database;
//! - [`webscraper`](webscraper::PROVIDER_NAME): `webscraper`, which fetches a page through the SSRF-safe
//!   [`SafeClient`] and returns its main readable text.
//!
//! - [`code`](code::PROVIDER_NAME): `simple_code`, which runs a Python 3 or JavaScript snippet in the workflow
//!   crate's code sandbox (the same one code nodes use) and answers with what it printed.
//!
//! (`audio` needs speech models, which toolplane does not have.)
//!
//! Each declaration lives next to its code as a JSON file in the shape of Dify's provider and tool YAML
//! (`src/<provider>/provider.json`), and each provider has its own SVG icon (`src/<provider>/icon.svg`).
//!
//! ```no_run
//! # fn demo() -> Result<(), toolplane_net::NetError> {
//! use toolplane_net::{NetConfig, SafeClient};
//!
//! let client = SafeClient::new(NetConfig::default())?;
//! for provider in toolplane_builtin::providers(client) {
//!     println!("{}", provider.id()); // "code", "time", then "webscraper"
//! }
//! # Ok(())
//! # }
//! ```

pub mod code;
mod declaration;
mod provider;
pub mod time;
pub mod webscraper;

use std::sync::Arc;

use toolplane_core::ToolProvider;
use toolplane_net::SafeClient;
use toolplane_workflow::sandbox::{Sandbox, SandboxConfig};

pub use declaration::DeclarationError;

/// The builtin providers, `code`, `time` then `webscraper`; the webscraper fetches through `client`, and `code`
/// runs snippets in a sandbox configured from the environment ([`SandboxConfig::from_env`]).
///
/// A provider whose declaration does not load is logged and left out, as Dify's loader does; a unit test loads
/// every declaration, so this does not happen in a tested build.
pub fn providers(client: SafeClient) -> Vec<Arc<dyn ToolProvider>> {
    providers_with_sandbox(client, Arc::new(Sandbox::new(SandboxConfig::from_env())))
}

/// Like [`providers`], with the code sandbox given explicitly (share one with the workflow engine).
pub fn providers_with_sandbox(client: SafeClient, sandbox: Arc<Sandbox>) -> Vec<Arc<dyn ToolProvider>> {
    let loaded = [
        code::provider(sandbox).map(|p| Arc::new(p) as Arc<dyn ToolProvider>),
        time::provider().map(|p| Arc::new(p) as Arc<dyn ToolProvider>),
        webscraper::provider(client).map(|p| Arc::new(p) as Arc<dyn ToolProvider>),
    ];
    loaded
        .into_iter()
        .filter_map(|provider| {
            provider
                .inspect_err(|error| tracing::error!(%error, "builtin provider skipped"))
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolplane_core::{ToolLabelEnum, ToolParameterForm, ToolParameterType, ToolProviderType};
    use toolplane_net::NetConfig;

    fn all() -> Vec<Arc<dyn ToolProvider>> {
        providers(SafeClient::new(NetConfig::default()).unwrap())
    }

    #[test]
    fn every_declaration_loads() {
        time::provider().unwrap();
        webscraper::provider(SafeClient::new(NetConfig::default()).unwrap()).unwrap();
        let ids: Vec<String> = all().iter().map(|p| p.id().to_owned()).collect();
        assert_eq!(ids, ["code", "time", "webscraper"]);
    }

    #[tokio::test]
    async fn providers_match_dify() {
        let providers = all();
        let code = &providers[0];
        assert_eq!(code.entity().identity.label.en_US, "Code Interpreter");
        assert_eq!(code.entity().identity.tags, [ToolLabelEnum::Productivity]);
        let simple = code.tool("simple_code").await.unwrap().unwrap();
        let language = &simple.entity().parameters[0];
        assert_eq!(
            (language.name.as_str(), language.kind, language.form, language.required),
            ("language", ToolParameterType::String, ToolParameterForm::Llm, true)
        );
        assert_eq!(language.option_values(), ["python3", "javascript"]);
        assert_eq!(simple.entity().parameters[1].name, "code");

        let time = &providers[1];
        assert_eq!(time.provider_type(), ToolProviderType::Builtin);
        let identity = &time.entity().identity;
        assert_eq!(identity.label.en_US, "CurrentTime");
        assert_eq!(identity.tags, [ToolLabelEnum::Utilities]);
        assert_eq!(identity.icon, "icon.svg");
        assert!(!time.entity().needs_credentials());
        let names: Vec<String> = time
            .tools()
            .await
            .unwrap()
            .iter()
            .map(|t| t.entity().identity.name.clone())
            .collect();
        assert_eq!(
            names,
            [
                "current_time",
                "localtime_to_timestamp",
                "timestamp_to_localtime",
                "timezone_conversion",
                "weekday"
            ]
        );

        let current = time.tool("current_time").await.unwrap().unwrap();
        assert_eq!(current.entity().identity.provider, "time");
        let zone = &current.entity().parameters[1];
        assert_eq!(
            (zone.name.as_str(), zone.kind, zone.form),
            ("timezone", ToolParameterType::Select, ToolParameterForm::Form)
        );
        assert_eq!(zone.default, Some("UTC".into()));
        assert_eq!(zone.option_values().len(), 18);
        assert_eq!(zone.option_values()[17], "Africa/Cairo");
        for value in zone.option_values() {
            assert!(
                value.parse::<chrono_tz::Tz>().is_ok(),
                "{value} is not in the tz database"
            );
        }

        let web = &providers[2];
        assert_eq!(web.entity().identity.label.en_US, "WebScraper");
        assert_eq!(web.entity().identity.tags, [ToolLabelEnum::Productivity]);
        let scraper = web.tool("webscraper").await.unwrap().unwrap();
        let params: Vec<(&str, ToolParameterType, ToolParameterForm, bool)> = scraper
            .entity()
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.kind, p.form, p.required))
            .collect();
        assert_eq!(
            params,
            [
                ("url", ToolParameterType::String, ToolParameterForm::Llm, true),
                ("user_agent", ToolParameterType::String, ToolParameterForm::Form, false),
                (
                    "generate_summary",
                    ToolParameterType::Boolean,
                    ToolParameterForm::Form,
                    false
                ),
            ]
        );
        assert_eq!(
            scraper.entity().parameters[1].default,
            Some(webscraper::DEFAULT_USER_AGENT.into())
        );
    }

    #[test]
    fn icons_are_svg() {
        for provider in all() {
            let icon = provider.icon().unwrap();
            assert_eq!(icon.mime_type, "image/svg+xml");
            let text = std::str::from_utf8(icon.bytes).unwrap();
            assert!(text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        }
    }
}
