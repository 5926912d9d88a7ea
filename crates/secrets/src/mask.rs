//! Secret fields of credential maps: masking for display, `[__HIDDEN__]` merging on update, and field-wise
//! encryption for storage (Dify's `ProviderConfigEncrypter`).
//!
//! Every function takes the names of the secret fields (those typed `secret-input` in the provider's credential
//! schema) and leaves all other fields untouched. Fields named as secret but absent from the map are skipped.

use serde_json::{Map, Value};

use crate::error::{Result, SecretsError};
use crate::keys::{PrivateKey, PublicKey};

/// What the console sends back for a secret it only showed masked: "keep the stored value".
pub const HIDDEN_VALUE: &str = "[__HIDDEN__]";

/// Substituted for [`HIDDEN_VALUE`] when there is no stored value to keep.
pub const UNKNOWN_VALUE: &str = "[__UNKNOWN__]";

/// A credential map: field name to JSON value.
pub type Credentials = Map<String, Value>;

/// Masks a secret for display, counting characters (not bytes): more than 6 characters keep the first 2 and the
/// last 2 with `*` in between (`sk-abcdef12` → `sk*******12`); 6 or fewer become all `*`.
pub fn mask_secret(value: &str) -> String {
    let len = value.chars().count();
    if len <= 6 {
        return "*".repeat(len);
    }
    let head: String = value.chars().take(2).collect();
    let tail: String = value.chars().skip(len - 2).collect();
    format!("{head}{}{tail}", "*".repeat(len - 4))
}

/// Returns a copy of `credentials` with every secret field masked by [`mask_secret`].
///
/// `null` stays `null`. A non-string value (Dify would crash on it) is masked through its JSON text, so nothing
/// secret leaks whatever the stored type.
pub fn mask_credentials(credentials: &Credentials, secret_fields: &[impl AsRef<str>]) -> Credentials {
    let mut masked = credentials.clone();
    for field in secret_fields {
        let Some(value) = masked.get_mut(field.as_ref()) else {
            continue;
        };
        let masked_text = match &*value {
            Value::Null => continue,
            Value::String(text) => mask_secret(text),
            other => mask_secret(&other.to_string()),
        };
        *value = Value::String(masked_text);
    }
    masked
}

/// Restores secrets the client did not change: every secret field of `new` whose value is exactly
/// [`HIDDEN_VALUE`] takes the value of the same field in `stored` (the decrypted originals), or
/// [`UNKNOWN_VALUE`] if `stored` has no such field. Non-secret fields are never rewritten.
pub fn merge_hidden(mut new: Credentials, stored: &Credentials, secret_fields: &[impl AsRef<str>]) -> Credentials {
    for field in secret_fields {
        let field = field.as_ref();
        if let Some(value) = new.get_mut(field)
            && value.as_str() == Some(HIDDEN_VALUE)
        {
            *value = stored
                .get(field)
                .cloned()
                .unwrap_or_else(|| Value::String(UNKNOWN_VALUE.to_owned()));
        }
    }
    new
}

/// Returns a copy of `credentials` with every present secret field replaced by its HYBRID ciphertext (base64).
///
/// Value rules (Dify encrypts `value or ""`): `null` encrypts the empty string; strings are encrypted as they are;
/// numbers and booleans are encrypted as their JSON text (`1234`, `true`) — Dify would crash on them, we accept a
/// numeric PIN typed as a number. Arrays and objects are rejected with [`SecretsError::SecretFieldNotString`].
pub fn encrypt_fields(
    credentials: &Credentials,
    secret_fields: &[impl AsRef<str>],
    key: &PublicKey,
) -> Result<Credentials> {
    let mut encrypted = credentials.clone();
    for field in secret_fields {
        let field = field.as_ref();
        let Some(value) = encrypted.get_mut(field) else {
            continue;
        };
        let plaintext = match value {
            Value::Null => String::new(),
            Value::String(text) => std::mem::take(text),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            Value::Array(_) => return Err(not_a_secret(field, "array")),
            Value::Object(_) => return Err(not_a_secret(field, "object")),
        };
        *value = Value::String(key.encrypt(&plaintext)?);
    }
    Ok(encrypted)
}

/// Returns a copy of `credentials` with every present secret field decrypted.
///
/// Empty values (`""` or `null`) are kept as they are, like Dify. Unlike Dify, which silently keeps a value it
/// cannot decrypt (and so hands ciphertext to the tool as if it were the secret), a value that fails to decrypt is
/// an error naming the field ([`SecretsError::FieldDecryption`]), as is a stored value that is not a string.
pub fn decrypt_fields(
    credentials: &Credentials,
    secret_fields: &[impl AsRef<str>],
    key: &PrivateKey,
) -> Result<Credentials> {
    let mut decrypted = credentials.clone();
    for field in secret_fields {
        let field = field.as_ref();
        let Some(value) = decrypted.get_mut(field) else {
            continue;
        };
        let token = match value {
            Value::Null => continue,
            Value::String(token) if token.is_empty() => continue,
            Value::String(token) => token,
            other => return Err(not_a_secret(field, json_type(other))),
        };
        let plaintext = key.decrypt(token).map_err(|source| SecretsError::FieldDecryption {
            field: field.to_owned(),
            source: Box::new(source),
        })?;
        *value = Value::String(plaintext);
    }
    Ok(decrypted)
}

fn not_a_secret(field: &str, found: &'static str) -> SecretsError {
    SecretsError::SecretFieldNotString {
        field: field.to_owned(),
        found,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Credentials {
        match value {
            Value::Object(map) => map,
            _ => panic!("test input must be an object"),
        }
    }

    #[test]
    fn mask_secret_follows_dify_lengths() {
        assert_eq!(mask_secret(""), "");
        assert_eq!(mask_secret("abc"), "***");
        assert_eq!(mask_secret("abcdef"), "******");
        assert_eq!(mask_secret("abcdefg"), "ab***fg");
        assert_eq!(mask_secret("sk-abcdef12"), "sk*******12");
    }

    #[test]
    fn mask_secret_counts_characters_not_bytes() {
        // 6 characters but 18 bytes: fully masked.
        assert_eq!(mask_secret("密码密码密码"), "******");
        // 7 characters, multi-byte at both ends.
        assert_eq!(mask_secret("🔑é12345ü😀"), "🔑é*****ü😀");
        assert_eq!(mask_secret("ключ-секрет"), "кл*******ет");
    }

    #[test]
    fn mask_credentials_touches_only_secret_fields() {
        let creds = map(json!({
            "api_key": "sk-1234567890",
            "base_url": "https://example.com",
            "pin": 123456789,
            "empty": null,
        }));
        let masked = mask_credentials(&creds, &["api_key", "pin", "empty", "absent"]);
        assert_eq!(
            Value::Object(masked),
            json!({"api_key": "sk*********90", "base_url": "https://example.com", "pin": "12*****89", "empty": null})
        );
    }

    #[test]
    fn merge_hidden_restores_stored_or_unknown() {
        let stored = map(json!({"api_key": "real-key", "region": "eu"}));
        let new = map(json!({
            "api_key": HIDDEN_VALUE,
            "secret2": HIDDEN_VALUE,
            "region": HIDDEN_VALUE,
            "token": "fresh",
        }));
        let merged = merge_hidden(new, &stored, &["api_key", "secret2", "token"]);
        assert_eq!(
            Value::Object(merged),
            json!({
                "api_key": "real-key",
                "secret2": UNKNOWN_VALUE,
                "region": HIDDEN_VALUE, // not a secret field: left alone
                "token": "fresh",
            })
        );
    }

    #[test]
    fn encrypt_fields_rejects_structured_values() {
        let key = PrivateKey::generate().unwrap();
        let creds = map(json!({"api_key": ["a"]}));
        let err = encrypt_fields(&creds, &["api_key"], key.public_key()).unwrap_err();
        assert!(matches!(err, SecretsError::SecretFieldNotString { ref field, found: "array" } if field == "api_key"));
    }

    #[test]
    fn encrypt_then_decrypt_fields() {
        let key = PrivateKey::generate().unwrap();
        let creds = map(json!({
            "api_key": "sk-live-123",
            "pin": 4321,
            "flag": true,
            "nothing": null,
            "url": "https://example.com",
        }));
        let fields = ["api_key", "pin", "flag", "nothing", "missing"];
        let encrypted = encrypt_fields(&creds, &fields, key.public_key()).unwrap();
        assert_eq!(encrypted["url"], "https://example.com");
        for field in ["api_key", "pin", "flag", "nothing"] {
            let token = encrypted[field].as_str().unwrap();
            assert!(token.len() > 300, "{field} should hold a HYBRID ciphertext");
        }
        assert!(!encrypted.contains_key("missing"));

        let decrypted = decrypt_fields(&encrypted, &fields, &key).unwrap();
        assert_eq!(
            Value::Object(decrypted),
            json!({"api_key": "sk-live-123", "pin": "4321", "flag": "true", "nothing": "", "url": "https://example.com"})
        );
    }

    #[test]
    fn decrypt_fields_skips_empty_and_names_failing_field() {
        let key = PrivateKey::generate().unwrap();
        let other = PrivateKey::generate().unwrap();
        let good = key.public_key().encrypt("v").unwrap();
        let foreign = other.public_key().encrypt("v").unwrap();

        let creds = map(json!({"a": "", "b": null, "c": good}));
        let out = decrypt_fields(&creds, &["a", "b", "c"], &key).unwrap();
        assert_eq!(Value::Object(out), json!({"a": "", "b": null, "c": "v"}));

        let creds = map(json!({"c": good, "d": foreign}));
        let err = decrypt_fields(&creds, &["c", "d"], &key).unwrap_err();
        match err {
            SecretsError::FieldDecryption { field, source } => {
                assert_eq!(field, "d");
                assert!(matches!(*source, SecretsError::RsaDecryption));
            }
            other => panic!("unexpected error {other:?}"),
        }

        let creds = map(json!({"n": 5}));
        let err = decrypt_fields(&creds, &["n"], &key).unwrap_err();
        assert!(matches!(
            err,
            SecretsError::SecretFieldNotString { found: "number", .. }
        ));
    }
}
