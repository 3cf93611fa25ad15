//! OAUTHBEARER tokens: the provider seam, and an unsecured-JWT provider for tests and for
//! brokers that run Kafka's unsecured validator.

use super::Secret;
use crate::transport::BoxError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A bearer token and the SASL extensions (RFC 7628 key/value pairs) to send with it.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthToken {
    /// The token (a JWT, usually).
    pub value: Secret,
    /// SASL extensions (KIP-342), as `key=value` pairs.
    pub extensions: Vec<(String, String)>,
}

impl OAuthToken {
    /// A token with no extensions.
    pub fn new(value: impl Into<Secret>) -> Self {
        Self { value: value.into(), extensions: Vec::new() }
    }
}

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthToken").field("value", &self.value).field("extensions", &self.extensions).finish()
    }
}

/// The future a [`TokenProvider`] returns.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<OAuthToken, BoxError>> + Send + 'a>>;

/// Where OAUTHBEARER tokens come from: asked on every authentication and re-authentication, so a
/// provider that caches should refresh before its token expires.
pub trait TokenProvider: Send + Sync + 'static {
    /// A token to authenticate with now.
    fn token(&self) -> TokenFuture<'_>;
}

/// Unsecured JWTs (`{"alg":"none"}`, no signature), as Kafka's
/// `OAuthBearerUnsecuredValidatorCallbackHandler` accepts them: for tests and development
/// clusters only, since anyone can mint one for any principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsecuredJwt {
    principal: String,
    lifetime: Duration,
    scope: Vec<String>,
}

impl UnsecuredJwt {
    /// Tokens for `principal` (the `sub` claim), valid for an hour from when they are made.
    pub fn new(principal: impl Into<String>) -> Self {
        Self { principal: principal.into(), lifetime: Duration::from_secs(3600), scope: Vec::new() }
    }

    /// How long each token is valid (its `exp` claim).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The `scope` claim.
    pub fn scope(mut self, scope: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scope = scope.into_iter().map(Into::into).collect();
        self
    }

    /// Parses librdkafka's `sasl.oauthbearer.config` for unsecured tokens:
    /// `principal=<sub> [lifeSeconds=<n>] [scope=<a,b>]`, space-separated.
    pub fn from_config(config: &str) -> Result<Self, String> {
        let mut principal = None;
        let mut jwt = UnsecuredJwt::new("");
        for item in config.split_whitespace() {
            let (k, v) = item.split_once('=').ok_or_else(|| format!("`{item}` is not key=value"))?;
            match k {
                "principal" if !v.is_empty() => principal = Some(v.to_string()),
                "lifeSeconds" => {
                    let secs: u64 = v.parse().map_err(|_| format!("lifeSeconds `{v}` is not a number of seconds"))?;
                    jwt.lifetime = Duration::from_secs(secs.max(1));
                }
                "scope" => jwt.scope = v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                other => return Err(format!("unknown key `{other}` (expected principal, lifeSeconds, scope)")),
            }
        }
        jwt.principal = principal.ok_or("`principal=<name>` is required")?;
        Ok(jwt)
    }

    /// A token made now.
    pub fn make(&self) -> OAuthToken {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let iat = now.as_secs();
        let exp = iat.saturating_add(self.lifetime.as_secs().max(1));
        let mut claims = format!("{{\"sub\":{},\"iat\":{iat},\"exp\":{exp}", json_string(&self.principal));
        if !self.scope.is_empty() {
            let scope: Vec<String> = self.scope.iter().map(|s| json_string(s)).collect();
            claims.push_str(&format!(",\"scope\":[{}]", scope.join(",")));
        }
        claims.push('}');
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        OAuthToken::new(format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.as_bytes())))
    }
}

impl TokenProvider for UnsecuredJwt {
    fn token(&self) -> TokenFuture<'_> {
        let token = self.make();
        Box::pin(async move { Ok(token) })
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsecured_jwt_has_the_claims_kafka_checks() {
        let t = UnsecuredJwt::new("al\"ice").lifetime(Duration::from_secs(60)).scope(["a", "b"]).make();
        let parts: Vec<&str> = t.value.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "", "no signature");
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), br#"{"alg":"none"}"#);
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert!(claims.starts_with(r#"{"sub":"al\"ice","iat":"#), "{claims}");
        assert!(claims.ends_with(r#","scope":["a","b"]}"#), "{claims}");
        let num = |key: &str| -> u64 {
            let at = claims.find(key).unwrap() + key.len();
            claims[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        assert_eq!(num("\"exp\":") - num("\"iat\":"), 60);
    }

    #[test]
    fn librdkafka_style_config_is_parsed() {
        let j = UnsecuredJwt::from_config("principal=admin lifeSeconds=30 scope=x,y").unwrap();
        assert_eq!(j, UnsecuredJwt::new("admin").lifetime(Duration::from_secs(30)).scope(["x", "y"]));
        assert!(UnsecuredJwt::from_config("lifeSeconds=30").unwrap_err().contains("principal"));
        assert!(UnsecuredJwt::from_config("principal=a color=red").unwrap_err().contains("color"));
    }
}
