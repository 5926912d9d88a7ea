//! Plugin unique identifiers: `[author/]name:version@checksum`.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The original's unique-identifier regex (`plugin_entities/identity.go`).
pub const UNIQUE_IDENTIFIER_PATTERN: &str =
    r"^(?:([a-z0-9_-]{1,64})/)?([a-z0-9_-]{1,255}):([0-9]{1,4})(\.[0-9]{1,4}){1,3}(-\w{1,16})?@[a-f0-9]{32,64}$";

static UNIQUE_IDENTIFIER: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(UNIQUE_IDENTIFIER_PATTERN));

/// A unique identifier that does not match the original's regex.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "plugin_unique_identifier is not valid: {0:?}; expected `author/name:version@checksum` matching {UNIQUE_IDENTIFIER_PATTERN}"
)]
pub struct IdentifierError(pub String);

/// `author/name:version@checksum`, validated; the author part is optional as in the original.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginUniqueIdentifier(String);

impl PluginUniqueIdentifier {
    /// Validates `identifier` against the original regex.
    pub fn parse(identifier: &str) -> Result<Self, IdentifierError> {
        if UNIQUE_IDENTIFIER.is_match(identifier) {
            Ok(Self(identifier.to_owned()))
        } else {
            Err(IdentifierError(identifier.to_owned()))
        }
    }

    /// Builds `author/name:version@checksum` (`name:version@checksum` when `author` is empty) and validates it.
    pub fn new(author: &str, name: &str, version: &str, checksum: &str) -> Result<Self, IdentifierError> {
        Self::parse(&format!("{}@{checksum}", plugin_identity(author, name, version)))
    }

    /// The whole identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `author/name` (`PluginID()`: everything before `:`).
    pub fn plugin_id(&self) -> &str {
        self.0.split_once(':').map_or(self.0.as_str(), |(id, _)| id)
    }

    /// The author, empty when the identifier has none.
    pub fn author(&self) -> &str {
        self.plugin_id().split_once('/').map_or("", |(author, _)| author)
    }

    /// The plugin name.
    pub fn name(&self) -> &str {
        let id = self.plugin_id();
        id.split_once('/').map_or(id, |(_, name)| name)
    }

    /// The version (between `:` and `@`).
    pub fn version(&self) -> &str {
        let rest = self.0.split_once(':').map_or("", |(_, rest)| rest);
        rest.split_once('@').map_or("", |(version, _)| version)
    }

    /// The package checksum (after `@`).
    pub fn checksum(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, checksum)| checksum)
    }

    /// Whether the author is a UUID (`RemoteLike()`): the original's marker of remote-debugging plugins.
    pub fn remote_like(&self) -> bool {
        is_uuid(self.author())
    }

    /// The working directory name the original uses: `author/name-version@checksum` (`:` replaced by `-`).
    pub fn working_dir_name(&self) -> String {
        self.0.replace(':', "-")
    }
}

/// `author/name:version`, or `name:version` without an author (`MarshalPluginID`).
pub fn plugin_identity(author: &str, name: &str, version: &str) -> String {
    if author.is_empty() {
        format!("{name}:{version}")
    } else {
        format!("{author}/{name}:{version}")
    }
}

/// Whether `s` parses as a UUID the way Go's `uuid.Parse` accepts the common forms (hyphenated or 32 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or(s);
    let bytes = s.as_bytes();
    match bytes.len() {
        32 => bytes.iter().all(u8::is_ascii_hexdigit),
        36 => bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

impl fmt::Display for PluginUniqueIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PluginUniqueIdentifier {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PluginUniqueIdentifier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PluginUniqueIdentifier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_splits() {
        let id = PluginUniqueIdentifier::parse(&format!("langgenius/openai:0.0.1@{SUM}")).unwrap();
        assert_eq!(id.plugin_id(), "langgenius/openai");
        assert_eq!(id.author(), "langgenius");
        assert_eq!(id.name(), "openai");
        assert_eq!(id.version(), "0.0.1");
        assert_eq!(id.checksum(), SUM);
        assert!(!id.remote_like());
        assert_eq!(id.working_dir_name(), format!("langgenius/openai-0.0.1@{SUM}"));
    }

    #[test]
    fn author_is_optional_and_versions_follow_the_regex() {
        let id = PluginUniqueIdentifier::parse(&format!("openai:1.2.3.4-beta@{}", &SUM[..32])).unwrap();
        assert_eq!(id.author(), "");
        assert_eq!(id.plugin_id(), "openai");
        assert_eq!(id.version(), "1.2.3.4-beta");
        for bad in [
            format!("Langgenius/openai:0.0.1@{SUM}"),
            format!("a/b:1@{SUM}"),
            format!("a/b:0.0.1@{}", &SUM[..31]),
            format!("a/b:0.0.1@{}", SUM.to_uppercase()),
            "a/b:0.0.1".to_owned(),
            // Go's `\w` is ASCII.
            format!("a/b:0.0.1-\u{03b2}@{SUM}"),
        ] {
            let err = PluginUniqueIdentifier::parse(&bad).unwrap_err();
            assert!(err.to_string().contains("not valid"), "{err}");
        }
    }

    #[test]
    fn uuid_authors_are_remote_like() {
        let id = PluginUniqueIdentifier::new("6f1d2b1e-6c0a-4a4e-9b7a-3c2d1e0f9a8b", "debug", "0.0.1", SUM).unwrap();
        assert!(id.remote_like());
        assert!(is_uuid("6f1d2b1e6c0a4a4e9b7a3c2d1e0f9a8b"));
        assert!(!is_uuid("langgenius"));
    }
}
