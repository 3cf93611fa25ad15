//! SCRAM credentials (KIP-554): describe which mechanisms a user has, and upsert or delete
//! them. The password never travels: the client sends a random salt and the salted password
//! (PBKDF2 with the mechanism's HMAC), as the broker stores it.

use crate::client::{Admin, retried};
use crate::error::{AdminError, check};
use crate::resource::Results;
use bytes::Bytes;
use krab_cluster::Secret;
use krab_protocol::ApiKey;
use krab_protocol::messages::alter_user_scram_credentials::{ScramCredentialDeletion, ScramCredentialUpsertion};
use krab_protocol::messages::describe_user_scram_credentials::UserName;
use krab_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
use sha2::{Sha256, Sha512};
use std::collections::BTreeMap;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// PBKDF2 of the password with this mechanism's HMAC: SCRAM's `Hi()`.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            ScramMechanism::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

/// A user's credential of one mechanism, as [`Admin::describe_user_scram_credentials`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    /// The mechanism.
    pub mechanism: ScramMechanism,
    /// The PBKDF2 iterations.
    pub iterations: i32,
}

/// A change of a user's SCRAM credentials.
#[derive(Debug, Clone)]
pub enum ScramAlteration {
    /// Creates or replaces the user's credential of `mechanism`.
    Upsert {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
        /// PBKDF2 iterations (Kafka accepts 4096 to 16384).
        iterations: i32,
        /// The password (salted here; never sent).
        password: Secret,
    },
    /// Deletes the user's credential of `mechanism`.
    Delete {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
    },
}

impl ScramAlteration {
    fn user(&self) -> &str {
        match self {
            ScramAlteration::Upsert { user, .. } | ScramAlteration::Delete { user, .. } => user,
        }
    }
}

impl Admin {
    /// The SCRAM mechanisms each user has (`None`: every user with a credential). A user
    /// without any answers RESOURCE_NOT_FOUND.
    pub async fn describe_user_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Result<Results<String, Vec<ScramCredentialInfo>>, AdminError> {
        self.whole(ApiKey::DescribeUserScramCredentials, |_, _| async move {
            let broker = self.any().await?;
            let r = broker
                .call(|_| DescribeUserScramCredentialsRequest {
                    users: users
                        .map(|us| us.iter().map(|u| UserName { name: u.clone(), ..Default::default() }).collect()),
                    ..Default::default()
                })
                .await?;
            check(
                ApiKey::DescribeUserScramCredentials,
                || "the SCRAM users".to_string(),
                r.error_code,
                r.error_message.as_ref(),
            )?;
            let mut out = BTreeMap::new();
            for u in r.results {
                let user = u.user.clone();
                let result = check(
                    ApiKey::DescribeUserScramCredentials,
                    || format!("user {user}"),
                    u.error_code,
                    u.error_message.as_ref(),
                )
                .map(|()| {
                    u.credential_infos
                        .iter()
                        .filter_map(|c| {
                            Some(ScramCredentialInfo {
                                mechanism: ScramMechanism::from_code(c.mechanism)?,
                                iterations: c.iterations,
                            })
                        })
                        .collect()
                });
                out.insert(u.user, result);
            }
            Ok(out)
        })
        .await
    }

    /// Upserts and deletes SCRAM credentials; one result per user.
    pub async fn alter_user_scram_credentials(
        &self,
        alterations: &[ScramAlteration],
    ) -> Result<Results<String, ()>, AdminError> {
        let mut upsertions = Vec::new();
        let mut deletions = Vec::new();
        for a in alterations {
            match a {
                ScramAlteration::Upsert { user, mechanism, iterations, password } => {
                    let rounds = u32::try_from(*iterations)
                        .ok()
                        .filter(|&i| i > 0)
                        .ok_or_else(|| AdminError::InvalidArgument(format!("user {user}: {iterations} iterations")))?;
                    let mut salt = [0u8; 32];
                    getrandom::fill(&mut salt)
                        .map_err(|e| AdminError::InvalidArgument(format!("no randomness for a salt: {e}")))?;
                    let salted = mechanism.salted_password(password.expose().as_bytes(), &salt, rounds);
                    upsertions.push((
                        user.clone(),
                        ScramCredentialUpsertion {
                            name: user.clone(),
                            mechanism: mechanism.code(),
                            iterations: *iterations,
                            salt: Bytes::copy_from_slice(&salt),
                            salted_password: Bytes::from(salted),
                            ..Default::default()
                        },
                    ));
                }
                ScramAlteration::Delete { user, mechanism } => deletions.push((
                    user.clone(),
                    ScramCredentialDeletion { name: user.clone(), mechanism: mechanism.code(), ..Default::default() },
                )),
            }
        }
        let users: Vec<String> = alterations.iter().map(|a| a.user().to_string()).collect();
        let (upsertions, deletions) = (&upsertions, &deletions);
        let results = self
            .each(ApiKey::AlterUserScramCredentials, users, retried, |asked: Vec<String>, attempt, _| async move {
                let broker = self.controller(attempt > 0).await?;
                let r = broker
                    .call(|_| AlterUserScramCredentialsRequest {
                        upsertions: upsertions
                            .iter()
                            .filter(|(u, _)| asked.contains(u))
                            .map(|(_, x)| x.clone())
                            .collect(),
                        deletions: deletions
                            .iter()
                            .filter(|(u, _)| asked.contains(u))
                            .map(|(_, x)| x.clone())
                            .collect(),
                        ..Default::default()
                    })
                    .await?;
                Ok(r.results
                    .into_iter()
                    .map(|u| {
                        let user = u.user.clone();
                        let result = check(
                            ApiKey::AlterUserScramCredentials,
                            || format!("user {user}"),
                            u.error_code,
                            u.error_message.as_ref(),
                        );
                        (u.user, result)
                    })
                    .collect())
            })
            .await;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salted_password_is_pbkdf2_of_the_mechanism() {
        // RFC 7677's SCRAM-SHA-256 example: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 iterations; SaltedPassword is the basis of its ClientKey and ServerKey.
        let salt = [0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81];
        let a = ScramMechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        let b = ScramMechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert_ne!(a, ScramMechanism::Sha256.salted_password(b"pencil", &salt, 4097));
        assert_eq!(ScramMechanism::Sha512.salted_password(b"pencil", &salt, 4096).len(), 64);
        assert_eq!(ScramMechanism::from_code(ScramMechanism::Sha512.code()), Some(ScramMechanism::Sha512));
        assert_eq!(ScramMechanism::from_code(0), None);
    }
}
