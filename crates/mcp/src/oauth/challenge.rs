//! `WWW-Authenticate: Bearer …` and `DPoP …` challenges (RFC 6750 §3, RFC 9728 §5.1, RFC 9449 §7.1).

/// The parameters of a `Bearer` challenge an MCP server sent with a 401 or 403.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `resource_metadata`: where the protected resource metadata lives (RFC 9728).
    pub resource_metadata: Option<String>,
    /// `scope`: the scopes the server wants (space separated).
    pub scope: Option<String>,
    /// `error`, e.g. `invalid_token` or `insufficient_scope`.
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
}

impl BearerChallenge {
    /// Parses the `Bearer` challenge out of a `WWW-Authenticate` header value, or failing that the `DPoP` one
    /// (RFC 9449 §7.1: a server that only takes DPoP-bound tokens challenges with that scheme, with the same
    /// parameters). Other schemes in the same header are skipped; `None` when there is neither.
    pub fn parse(header: &str) -> Option<Self> {
        Self::parse_scheme(header, "bearer").or_else(|| Self::parse_scheme(header, "dpop"))
    }

    /// The parameters of the challenge with `scheme` (case-insensitive), if the header has one.
    pub fn parse_scheme(header: &str, scheme: &str) -> Option<Self> {
        let mut rest = header.trim();
        loop {
            let (name, after) = split_token(rest);
            if name.is_empty() {
                return None;
            }
            let (params, next) = parse_params(after);
            if name.eq_ignore_ascii_case(scheme) {
                let mut challenge = BearerChallenge::default();
                for (key, value) in params {
                    match key.to_ascii_lowercase().as_str() {
                        "resource_metadata" => challenge.resource_metadata = Some(value),
                        "scope" => challenge.scope = Some(value),
                        "error" => challenge.error = Some(value),
                        "error_description" => challenge.error_description = Some(value),
                        _ => {}
                    }
                }
                return Some(challenge);
            }
            rest = next;
        }
    }
}

/// Splits off a token (up to whitespace or a comma).
fn split_token(input: &str) -> (&str, &str) {
    let input = input.trim_start_matches([' ', '\t', ',']);
    let end = input
        .find(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .unwrap_or(input.len());
    (&input[..end], &input[end..])
}

/// Parses `key=value, key="quoted"` pairs until the next challenge's scheme; returns them and the rest.
fn parse_params(mut input: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    loop {
        let trimmed = input.trim_start_matches([' ', '\t', ',']);
        let (key, after_key) = split_token(trimmed);
        if key.is_empty() {
            return (params, "");
        }
        let after_key_ws = after_key.trim_start();
        let Some(after_eq) = after_key_ws.strip_prefix('=') else {
            // A bare token: the scheme of the next challenge (or token68 of this one, which MCP does not use).
            return (params, trimmed);
        };
        let after_eq = after_eq.trim_start();
        let (value, rest) = if let Some(quoted) = after_eq.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    other => value.push(other),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after_eq.find([',', ' ', '\t']).unwrap_or(after_eq.len());
            (after_eq[..end].to_owned(), &after_eq[end..])
        };
        params.push((key.to_owned(), value));
        input = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mcp_challenges() {
        let c = BearerChallenge::parse(
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", scope="files:read files:write""#,
        )
        .unwrap();
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        assert_eq!(c.scope.as_deref(), Some("files:read files:write"));

        let c = BearerChallenge::parse(
            r#"Basic realm="x", Bearer error="invalid_token", error_description="the \"token\" expired""#,
        )
        .unwrap();
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(c.error_description.as_deref(), Some("the \"token\" expired"));
        assert_eq!(BearerChallenge::parse("bearer").unwrap(), BearerChallenge::default());
        assert!(BearerChallenge::parse(r#"Basic realm="x""#).is_none());
        assert!(BearerChallenge::parse("").is_none());
        assert!(BearerChallenge::parse(r#"Bearer scope="unterminated"#).is_some());

        // DPoP-only servers (RFC 9449 §7.1); Bearer wins when both are offered.
        let c = BearerChallenge::parse(r#"DPoP error="use_dpop_nonce", resource_metadata="https://m/prm""#).unwrap();
        assert_eq!(c.error.as_deref(), Some("use_dpop_nonce"));
        assert_eq!(c.resource_metadata.as_deref(), Some("https://m/prm"));
        let c = BearerChallenge::parse(r#"DPoP algs="ES256", Bearer scope="a""#).unwrap();
        assert_eq!(c.scope.as_deref(), Some("a"));
        assert!(BearerChallenge::parse_scheme(r#"Bearer scope="a""#, "dpop").is_none());
    }
}
