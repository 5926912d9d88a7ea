//! DPoP (RFC 9449): sender-constrained tokens. The client holds an ES256 key pair, proves possession of it with a
//! fresh signed proof JWT on every token request and every request to the MCP server, and the authorization
//! server binds the access token to the key's thumbprint (`cnf.jkt`), so a stolen token is useless without the
//! key.
//!
//! [`DpopKey`] is the key pair and makes proofs; [`Dpop`] adds the nonces servers hand out (`DPoP-Nonce`,
//! RFC 9449 §8 and §9), one per origin, and is what the token functions and the MCP client take.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::OAuthError;

/// The only proof algorithm toolplane signs with.
pub const DPOP_ALGORITHM: &str = "ES256";
/// The request header carrying a proof (`DPoP`), lower-cased as HTTP/2 and `HeaderName` want it.
pub const DPOP_HEADER: &str = "dpop";
/// The response header carrying a server-supplied nonce (`DPoP-Nonce`).
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";
/// The error a server answers when a proof lacks its (current) nonce.
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// An ES256 (P-256) key pair for DPoP proofs. Keep one per client registration: tokens are bound to it, so a new
/// key means new tokens. [`DpopKey::pkcs8`] exports it for storage (treat it as a secret).
pub struct DpopKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    /// The public key as a JWK (`kty`, `crv`, `x`, `y`), as it goes into every proof's header.
    jwk: Value,
}

impl std::fmt::Debug for DpopKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey({})", self.thumbprint())
    }
}

impl DpopKey {
    /// A fresh random key pair.
    pub fn generate() -> Result<Self, OAuthError> {
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| OAuthError::Unsupported("generating a P-256 key for DPoP failed".into()))?;
        Self::from_pkcs8(document.as_ref())
    }

    /// A key pair from PKCS#8 DER bytes (as [`DpopKey::pkcs8`] returns them).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, OAuthError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| OAuthError::Unsupported("the DPoP key is not a PKCS#8 P-256 key; ES256 needs one".into()))?;
        // An uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = pair.public_key().as_ref();
        let (x, y) = match point {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => {
                return Err(OAuthError::Unsupported(
                    "the DPoP public key is not an uncompressed P-256 point".into(),
                ));
            }
        };
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        });
        Ok(Self {
            pair,
            pkcs8: der.to_vec(),
            jwk,
        })
    }

    /// The private key as PKCS#8 DER, to store it (encrypted) next to the tokens bound to it.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The JWK SHA-256 thumbprint (RFC 7638), base64url: what a bound token's `cnf.jkt` holds.
    pub fn thumbprint(&self) -> String {
        let field = |k: &str| self.jwk.get(k).and_then(Value::as_str).unwrap_or_default();
        // RFC 7638 §3.2: the required members only, in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            field("crv"),
            field("kty"),
            field("x"),
            field("y")
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A proof for one HTTP request (RFC 9449 §4.2): header `typ` = `dpop+jwt`, `alg` = ES256 and the public
    /// `jwk`; claims `jti` (fresh), `htm`, `htu` (the URL without query and fragment), `iat`, `ath` (the base64url
    /// SHA-256 of `access_token`, on requests that present one) and the server's `nonce` when it gave one.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, OAuthError> {
        let htu = target_uri(url)?;
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = json!({"typ": "dpop+jwt", "alg": DPOP_ALGORITHM, "jwk": self.jwk});
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method.to_ascii_uppercase(),
            "htu": htu,
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = Value::String(access_token_hash(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::String(nonce.to_owned());
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| OAuthError::Unsupported("signing the DPoP proof failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// `ath`: base64url(SHA-256(ASCII access token)) (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// `htu`: the request URL without query and fragment (RFC 9449 §4.2).
fn target_uri(url: &str) -> Result<String, OAuthError> {
    let mut parsed = Url::parse(url)
        .map_err(|e| OAuthError::Discovery(format!("cannot make a DPoP proof for {url:?}, not a URL: {e}")))?;
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed.to_string())
}

/// The origin a nonce belongs to.
fn origin_of(url: &str) -> Option<String> {
    Url::parse(url).ok().map(|u| u.origin().ascii_serialization())
}

/// A DPoP key with the nonces servers have handed out. Cheap to clone (shared); use one per MCP server
/// connection and its authorization server, since tokens are bound to the key.
#[derive(Clone)]
pub struct Dpop {
    inner: Arc<DpopInner>,
}

struct DpopInner {
    key: DpopKey,
    /// Latest `DPoP-Nonce` per origin: the authorization server and the MCP server each keep their own.
    nonces: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Dpop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dpop({:?})", self.inner.key)
    }
}

impl Dpop {
    /// Wraps a key.
    pub fn new(key: DpopKey) -> Self {
        Self {
            inner: Arc::new(DpopInner {
                key,
                nonces: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// With a freshly generated key.
    pub fn generate() -> Result<Self, OAuthError> {
        DpopKey::generate().map(Self::new)
    }

    /// The key.
    pub fn key(&self) -> &DpopKey {
        &self.inner.key
    }

    /// A proof for `method` `url`, with the nonce last received from that URL's origin.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> Result<String, OAuthError> {
        let nonce = self.nonce_for(url);
        self.inner.key.proof(method, url, access_token, nonce.as_deref())
    }

    /// The nonce last received from `url`'s origin.
    pub fn nonce_for(&self, url: &str) -> Option<String> {
        let origin = origin_of(url)?;
        match self.inner.nonces.lock() {
            Ok(nonces) => nonces.get(&origin).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&origin).cloned(),
        }
    }

    /// Remembers a `DPoP-Nonce` a response from `url` carried; returns whether it differs from the one held.
    pub fn remember_nonce(&self, url: &str, nonce: &str) -> bool {
        let Some(origin) = origin_of(url) else {
            return false;
        };
        let mut nonces = match self.inner.nonces.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        nonces.insert(origin, nonce.to_owned()).as_deref() != Some(nonce)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Verifies a proof the way a server does: with the key from its own `jwk` header.
    fn verify(proof: &str) -> (Value, Value) {
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        let claims = decode(parts[1]);
        let x = URL_SAFE_NO_PAD.decode(header["jwk"]["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(header["jwk"]["y"].as_str().unwrap()).unwrap();
        let mut point = vec![0x04];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the proof's signature verifies with its jwk");
        (header, claims)
    }

    #[test]
    fn proofs_are_signed_and_carry_the_claims() {
        let key = DpopKey::generate().unwrap();
        let proof = key
            .proof(
                "post",
                "https://mcp.example.com/mcp?x=1#frag",
                Some("tok.en"),
                Some("n-1"),
            )
            .unwrap();
        let (header, claims) = verify(&proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert_eq!(header["jwk"]["crv"], "P-256");
        assert!(header["jwk"].get("d").is_none(), "no private part in the header");
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://mcp.example.com/mcp");
        assert_eq!(claims["nonce"], "n-1");
        // ath = base64url(SHA-256("tok.en")), computed independently.
        assert_eq!(
            claims["ath"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"tok.en")).as_str()
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(claims["iat"].as_u64().unwrap().abs_diff(now) <= 5);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(claims["jti"].as_str().unwrap()).unwrap().len(),
            16
        );

        // Token requests present no token and may have no nonce; every proof gets its own jti.
        let (_, bare) = verify(&key.proof("POST", "https://as.example.com/token", None, None).unwrap());
        assert!(bare.get("ath").is_none() && bare.get("nonce").is_none());
        assert_ne!(bare["jti"], claims["jti"]);
        assert!(key.proof("POST", "not a url", None, None).is_err());
    }

    #[test]
    fn keys_round_trip_and_have_rfc7638_thumbprints() {
        let key = DpopKey::generate().unwrap();
        let again = DpopKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(again.public_jwk(), key.public_jwk());
        assert_eq!(again.thumbprint(), key.thumbprint());
        assert_ne!(DpopKey::generate().unwrap().thumbprint(), key.thumbprint());
        assert!(DpopKey::from_pkcs8(b"nope").is_err());
        // RFC 7638 §3.1's example is an RSA key; check the canonical form for EC by recomputing it by hand.
        let jwk = key.public_jwk();
        let canonical = format!(
            "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{}\",\"y\":\"{}\"}}",
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(
            key.thumbprint(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
        );
        assert!(!format!("{key:?}").contains(&URL_SAFE_NO_PAD.encode(key.pkcs8())));
    }

    #[test]
    fn nonces_are_kept_per_origin() {
        let dpop = Dpop::generate().unwrap();
        assert!(dpop.remember_nonce("https://as.example.com/token", "as-1"));
        assert!(!dpop.remember_nonce("https://as.example.com/other", "as-1"));
        dpop.remember_nonce("https://mcp.example.com/mcp", "rs-1");
        let (_, claims) = verify(&dpop.proof("POST", "https://as.example.com/token", None).unwrap());
        assert_eq!(claims["nonce"], "as-1");
        let (_, claims) = verify(&dpop.proof("GET", "https://mcp.example.com/mcp", Some("t")).unwrap());
        assert_eq!(claims["nonce"], "rs-1");
        assert_eq!(claims["htm"], "GET");
        let (_, claims) = verify(&dpop.proof("POST", "https://other.example.com/", None).unwrap());
        assert!(claims.get("nonce").is_none());
    }
}
