//! Tool names: valid LLM function names (`^[a-zA-Z0-9_-]{1,64}$`), unique within a provider.

use std::collections::HashSet;

/// The longest tool name LLM function calling accepts.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` matches `^[a-zA-Z0-9_-]{1,64}$`.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Replaces every run of characters outside `[a-zA-Z0-9_-]` with `_`, trims `_`, and cuts to 64 characters.
pub fn sanitize_tool_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_NAME_LEN));
    let mut gap = false;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    let trimmed = out.trim_matches('_');
    trimmed
        .chars()
        .take(MAX_NAME_LEN)
        .collect::<String>()
        .trim_end_matches('_')
        .to_owned()
}

/// Dify's generated id for an operation without `operationId`: the path without characters outside
/// `[a-zA-Z0-9_-]`, then `_` and the method (`/v1/users/{id}` + get → `v1usersid_get`); `root_get` for `/`.
pub fn derived_name(method: &str, path: &str) -> String {
    let cleaned: String = path
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let cleaned = if cleaned.is_empty() { "root".to_owned() } else { cleaned };
    let suffix = format!("_{}", method.to_ascii_lowercase());
    let keep = MAX_NAME_LEN.saturating_sub(suffix.len());
    format!("{}{suffix}", cleaned.get(..cleaned.len().min(keep)).unwrap_or(&cleaned))
}

/// Hands out unique names.
#[derive(Debug, Default)]
pub(crate) struct NameRegistry {
    taken: HashSet<String>,
}

impl NameRegistry {
    /// `wanted` if free, else `wanted_2`, `wanted_3`, … (shortened to stay within 64 characters).
    pub(crate) fn claim(&mut self, wanted: &str) -> String {
        if self.taken.insert(wanted.to_owned()) {
            return wanted.to_owned();
        }
        let mut n = 2usize;
        loop {
            let suffix = format!("_{n}");
            // Names are ASCII (they passed sanitize_tool_name or derived_name), so byte slicing is safe.
            let keep = MAX_NAME_LEN.saturating_sub(suffix.len()).min(wanted.len());
            let candidate = format!("{}{suffix}", wanted.get(..keep).unwrap_or(wanted));
            if self.taken.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_tool_name("list_pets-v2"));
        assert!(!is_valid_tool_name("pets.list"));
        assert!(!is_valid_tool_name(&"a".repeat(65)));
        assert_eq!(sanitize_tool_name("GET /pets/{id}"), "GET_pets_id");
        assert_eq!(sanitize_tool_name("pets.list"), "pets_list");
        assert_eq!(sanitize_tool_name("…"), "");
        assert_eq!(sanitize_tool_name(&"x".repeat(100)).len(), 64);
        assert_eq!(derived_name("GET", "/v1/users/{id}"), "v1usersid_get");
        assert_eq!(derived_name("post", "/"), "root_post");
        let mut r = NameRegistry::default();
        assert_eq!(r.claim("a"), "a");
        assert_eq!(r.claim("a"), "a_2");
        let long = "y".repeat(64);
        assert_eq!(r.claim(&long), long);
        assert_eq!(r.claim(&long).len(), 64);
    }
}
