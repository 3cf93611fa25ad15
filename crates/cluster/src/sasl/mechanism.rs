//! The SASL mechanisms as sans-I/O state machines: each turns the server's last message into the
//! next message to send, or says the exchange is done.

use super::{OAuthToken, SaslMechanism};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// SCRAM iteration counts accepted from a server: Kafka's own range starts at 4096; the upper
/// bound keeps a hostile server from making the client hash for minutes.
const SCRAM_MIN_ITERATIONS: u32 = 4096;
const SCRAM_MAX_ITERATIONS: u32 = 1_000_000;

/// What to do after a server message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send these bytes in the next SaslAuthenticate.
    Send(Vec<u8>),
    /// Authenticated.
    Done,
}

/// One authentication attempt of one mechanism.
pub(crate) enum Exchange {
    /// PLAIN: one message, then the server's (empty) answer.
    Plain { sent: bool },
    /// SCRAM: client-first, server-first, client-final, server-final.
    Scram(Scram),
    /// OAUTHBEARER: one message; a non-empty answer is the server's error status.
    OAuth { sent: bool },
}

impl Exchange {
    /// The exchange and its first message.
    pub(crate) fn start(
        mechanism: SaslMechanism,
        username: &str,
        password: &str,
        token: Option<&OAuthToken>,
        nonce: &[u8],
    ) -> (Exchange, Vec<u8>) {
        match mechanism {
            SaslMechanism::Plain => {
                let mut m = Vec::with_capacity(username.len() + password.len() + 2);
                m.push(0);
                m.extend_from_slice(username.as_bytes());
                m.push(0);
                m.extend_from_slice(password.as_bytes());
                (Exchange::Plain { sent: true }, m)
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let hash = if mechanism == SaslMechanism::ScramSha256 { Hash::Sha256 } else { Hash::Sha512 };
                let (scram, first) = Scram::start(hash, username, password, nonce);
                (Exchange::Scram(scram), first)
            }
            SaslMechanism::OAuthBearer => {
                // RFC 7628 §3.1: gs2 header, then \x01-separated key=value pairs, ending \x01\x01.
                let mut m = b"n,,\x01auth=Bearer ".to_vec();
                if let Some(t) = token {
                    m.extend_from_slice(t.value.expose().as_bytes());
                    m.push(1);
                    for (k, v) in &t.extensions {
                        m.extend_from_slice(format!("{k}={v}").as_bytes());
                        m.push(1);
                    }
                } else {
                    m.push(1);
                }
                m.push(1);
                (Exchange::OAuth { sent: true }, m)
            }
        }
    }

    /// The next step after the server's message; `Err` says why the server's message is
    /// refused (or what the server said was wrong).
    pub(crate) fn next(&mut self, server: &[u8]) -> Result<Step, String> {
        match self {
            Exchange::Plain { sent } | Exchange::OAuth { sent } if *sent => {
                if server.is_empty() {
                    Ok(Step::Done)
                } else {
                    // OAUTHBEARER's error status is JSON (RFC 7628 §3.2.2); PLAIN sends nothing.
                    Err(format!("the broker answered {}", String::from_utf8_lossy(server)))
                }
            }
            Exchange::Plain { .. } | Exchange::OAuth { .. } => Err("nothing was sent".into()),
            Exchange::Scram(s) => s.next(server),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            Hash::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

enum ScramState {
    /// client-first sent; waiting for server-first.
    First,
    /// client-final sent; waiting for server-final, whose signature must be this.
    Final {
        server_signature: Vec<u8>,
    },
    Done,
}

/// The client side of SCRAM (RFC 5802).
pub(crate) struct Scram {
    hash: Hash,
    password: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
    state: ScramState,
}

impl Scram {
    fn start(hash: Hash, username: &str, password: &str, nonce: &[u8]) -> (Scram, Vec<u8>) {
        let client_nonce = STANDARD.encode(nonce);
        // RFC 5802 §5.1: `=` and `,` in the name are escaped.
        let name = username.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={client_nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        let scram = Scram {
            hash,
            password: password.as_bytes().to_vec(),
            client_nonce,
            client_first_bare,
            state: ScramState::First,
        };
        (scram, first)
    }

    fn next(&mut self, server: &[u8]) -> Result<Step, String> {
        let text = std::str::from_utf8(server).map_err(|_| "the server's SCRAM message is not UTF-8".to_string())?;
        match std::mem::replace(&mut self.state, ScramState::Done) {
            ScramState::First => {
                let attr = |key: char| attribute(text, key);
                if let Some(e) = attr('e') {
                    return Err(format!("the server refused: {e}"));
                }
                if text.starts_with("m=") {
                    return Err("the server asks for a SCRAM extension krab does not know".into());
                }
                let nonce = attr('r').ok_or("server-first has no nonce")?;
                if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
                    return Err("server-first's nonce does not extend the client's".into());
                }
                let salt = STANDARD.decode(attr('s').ok_or("server-first has no salt")?).map_err(|_| "bad salt")?;
                let iterations: u32 = attr('i')
                    .ok_or("server-first has no iteration count")?
                    .parse()
                    .map_err(|_| "bad iteration count")?;
                if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations) {
                    return Err(format!(
                        "iteration count {iterations} outside {SCRAM_MIN_ITERATIONS}..={SCRAM_MAX_ITERATIONS}"
                    ));
                }
                let h = self.hash;
                let salted = h.salted_password(&self.password, &salt, iterations);
                let client_key = h.hmac(&salted, b"Client Key");
                let stored_key = h.digest(&client_key);
                // c=biws: base64 of the gs2 header "n,," (no channel binding).
                let without_proof = format!("c=biws,r={nonce}");
                let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
                let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
                let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
                let server_key = h.hmac(&salted, b"Server Key");
                let server_signature = h.hmac(&server_key, auth_message.as_bytes());
                self.state = ScramState::Final { server_signature };
                Ok(Step::Send(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes()))
            }
            ScramState::Final { server_signature } => {
                if let Some(e) = attribute(text, 'e') {
                    return Err(format!("the server refused: {e}"));
                }
                let v = attribute(text, 'v').ok_or("server-final has no verifier")?;
                let got = STANDARD.decode(v).map_err(|_| "bad server signature encoding")?;
                if got != server_signature {
                    return Err("the server's signature is wrong: it does not know the password".into());
                }
                Ok(Step::Done)
            }
            ScramState::Done => Err("the exchange is over".into()),
        }
    }
}

/// The value of attribute `key` in a SCRAM message (`k=v,k=v`).
fn attribute(message: &str, key: char) -> Option<&str> {
    message.split(',').find_map(|a| a.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's SCRAM-SHA-256 example, message for message.
    #[test]
    fn scram_sha256_matches_rfc_7677() {
        let nonce = STANDARD.decode("rOprNGfwEbeRWgbNEkqO").unwrap();
        let (mut ex, first) = Exchange::start(SaslMechanism::ScramSha256, "user", "pencil", None, &nonce);
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let Step::Send(final_) = ex.next(server_first).unwrap() else { panic!("client-final expected") };
        assert_eq!(
            String::from_utf8(final_).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(ex.next(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap(), Step::Done);
    }

    #[test]
    fn a_server_that_does_not_know_the_password_is_refused() {
        let (mut ex, _) = Exchange::start(SaslMechanism::ScramSha512, "u", "p", None, b"0123456789abcdef");
        let Exchange::Scram(s) = &ex else { unreachable!() };
        let server_first = format!("r={}xyz,s=c2FsdA==,i=4096", s.client_nonce);
        assert!(matches!(ex.next(server_first.as_bytes()).unwrap(), Step::Send(_)));
        let e = ex.next(b"v=AAAA").unwrap_err();
        assert!(e.contains("signature"), "{e}");
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        let start = || Exchange::start(SaslMechanism::ScramSha256, "u", "p", None, b"nonce-nonce-nonce");
        let nonce = STANDARD.encode(b"nonce-nonce-nonce");
        for (msg, why) in [
            (format!("r={nonce}x,s=c2FsdA==,i=4294967295"), "iteration"),
            (format!("r={nonce}x,s=c2FsdA==,i=1"), "iteration"),
            ("r=other,s=c2FsdA==,i=4096".to_string(), "nonce"),
            (format!("r={nonce},s=c2FsdA==,i=4096"), "nonce"),
            (format!("r={nonce}x,i=4096"), "salt"),
            ("e=unknown-user".to_string(), "unknown-user"),
            (format!("m=ext,r={nonce}x,s=c2FsdA==,i=4096"), "extension"),
        ] {
            let (mut ex, _) = start();
            let e = ex.next(msg.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{msg}: {e}");
        }
    }

    #[test]
    fn plain_and_oauthbearer_messages() {
        let (mut ex, m) = Exchange::start(SaslMechanism::Plain, "alice", "pw", None, b"");
        assert_eq!(m, b"\0alice\0pw");
        assert_eq!(ex.next(b"").unwrap(), Step::Done);
        let mut token = OAuthToken::new("abc.def.");
        token.extensions.push(("traceId".into(), "7".into()));
        let (mut ex, m) = Exchange::start(SaslMechanism::OAuthBearer, "", "", Some(&token), b"");
        assert_eq!(m, b"n,,\x01auth=Bearer abc.def.\x01traceId=7\x01\x01");
        let e = ex.next(br#"{"status":"invalid_token"}"#).unwrap_err();
        assert!(e.contains("invalid_token"), "{e}");
    }
}
