//! Localised strings in Dify's `I18nObject` shape.

use serde::{Deserialize, Deserializer, Serialize};

/// A string in Dify's four console languages.
///
/// `en_US` is required on input; every other language falls back to it, and all four are always serialised,
/// exactly as Dify's `I18nObject.to_dict()` emits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(non_snake_case)] // field names are Dify's locale keys
pub struct I18nObject {
    pub en_US: String,
    pub zh_Hans: String,
    pub pt_BR: String,
    pub ja_JP: String,
}

impl I18nObject {
    /// The same text in every language.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            zh_Hans: text.clone(),
            pt_BR: text.clone(),
            ja_JP: text.clone(),
            en_US: text,
        }
    }

    /// English text with a Simplified Chinese translation.
    pub fn with_zh(en: impl Into<String>, zh: impl Into<String>) -> Self {
        Self {
            zh_Hans: zh.into(),
            ..Self::new(en)
        }
    }
}

impl From<&str> for I18nObject {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl<'de> Deserialize<'de> for I18nObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[allow(non_snake_case)]
        struct Wire {
            en_US: String,
            zh_Hans: Option<String>,
            pt_BR: Option<String>,
            ja_JP: Option<String>,
        }
        let wire = Wire::deserialize(deserializer)?;
        // Dify treats an empty translation like a missing one.
        let or_en = |v: Option<String>| v.filter(|s| !s.is_empty()).unwrap_or_else(|| wire.en_US.clone());
        Ok(Self {
            zh_Hans: or_en(wire.zh_Hans),
            pt_BR: or_en(wire.pt_BR),
            ja_JP: or_en(wire.ja_JP),
            en_US: wire.en_US,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_languages_default_to_english() {
        let v: I18nObject = serde_json::from_str(r#"{"en_US":"Time","zh_Hans":"时间"}"#).unwrap();
        assert_eq!(v.zh_Hans, "时间");
        assert_eq!(v.pt_BR, "Time");
        assert_eq!(v.ja_JP, "Time");
        let out = serde_json::to_value(&v).unwrap();
        assert_eq!(out["ja_JP"], "Time");
    }

    #[test]
    fn english_is_required() {
        let err = serde_json::from_str::<I18nObject>(r#"{"zh_Hans":"时间"}"#).unwrap_err();
        assert!(err.to_string().contains("en_US"), "{err}");
    }
}
