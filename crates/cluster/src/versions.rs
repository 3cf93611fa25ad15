//! Version negotiation: on connect, ApiVersions at the highest version krab has; on
//! UNSUPPORTED_VERSION, the KIP-511 fallback; afterwards each request uses the highest version
//! both sides support.

use crate::connection::BrokerClient;
use crate::error::{ClusterError, RequestError};
use bytes::Bytes;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use krab_protocol::{ApiKey, Message, VersionRange};
use std::collections::BTreeMap;

/// What a broker said it supports, and what that means for each API krab knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    broker: String,
    ranges: BTreeMap<i16, VersionRange>,
    /// The ApiVersions version the exchange finally used.
    pub negotiated_with: i16,
}

impl ApiVersions {
    /// A table from a broker's ApiVersions response.
    pub fn from_response(broker: impl Into<String>, response: &ApiVersionsResponse, negotiated_with: i16) -> Self {
        let ranges =
            response.api_keys.iter().map(|k| (k.api_key, VersionRange::new(k.min_version, k.max_version))).collect();
        Self { broker: broker.into(), ranges, negotiated_with }
    }

    /// The broker's range for `api`, if it offers the API.
    pub fn broker_range(&self, api: ApiKey) -> Option<VersionRange> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// The version to use for `api`: the highest both sides support.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, ClusterError> {
        let theirs =
            self.broker_range(api).ok_or_else(|| ClusterError::UnsupportedApi { broker: self.broker.clone(), api })?;
        let ours = api.versions();
        ours.highest_common(&theirs).ok_or(ClusterError::NoCommonVersion {
            broker: self.broker.clone(),
            api,
            theirs,
            ours,
        })
    }

    /// Every API krab knows with the version chosen for it (or why none).
    pub fn chosen(&self) -> Vec<(ApiKey, Result<i16, ClusterError>)> {
        ApiKey::ALL.iter().map(|&api| (api, self.version_for(api))).collect()
    }
}

fn request(version: i16) -> ApiVersionsRequest {
    let mut req = ApiVersionsRequest::default();
    if version >= 3 {
        req.client_software_name = "krab".into();
        req.client_software_version = env!("CARGO_PKG_VERSION").into();
    }
    req
}

/// Runs the ApiVersions exchange on a fresh connection.
///
/// A broker that does not know our ApiVersions version answers UNSUPPORTED_VERSION with a
/// version-0 body that lists (KIP-511) the ApiVersions versions it does support, so krab retries
/// with the highest of those, or with version 0 when the body says nothing usable.
pub async fn negotiate(client: &BrokerClient, broker: &str) -> Result<ApiVersions, ClusterError> {
    let mut version = ApiKey::ApiVersions.versions().max;
    for _attempt in 0..3 {
        let frame = client.send_raw(&request(version), version).await.map_err(|source| ClusterError::Request {
            broker: broker.to_string(),
            api: ApiKey::ApiVersions,
            source,
        })?;
        // ApiVersions responses always use response header v0: a 4-byte correlation id.
        let body = frame.slice(4.min(frame.len())..);
        let code = ErrorCode::from_code(body.get(..2).map_or(0, |b| i16::from_be_bytes([b[0], b[1]])));
        if code == ErrorCode::UnsupportedVersion && version > 0 {
            let next = fallback_version(&body);
            tracing::debug!(broker, tried = version, next, "ApiVersions version refused; falling back (KIP-511)");
            version = next.min(version - 1);
            continue;
        }
        let decode_err = |e| ClusterError::Request {
            broker: broker.to_string(),
            api: ApiKey::ApiVersions,
            source: RequestError::Decode(e),
        };
        let response = ApiVersionsResponse::decode(&body, version).map_err(decode_err)?;
        if code != ErrorCode::None {
            return Err(ClusterError::Broker {
                broker: broker.to_string(),
                api: ApiKey::ApiVersions,
                code,
                message: None,
            });
        }
        return Ok(ApiVersions::from_response(broker, &response, version));
    }
    Err(ClusterError::Broker {
        broker: broker.to_string(),
        api: ApiKey::ApiVersions,
        code: ErrorCode::UnsupportedVersion,
        message: Some("no ApiVersions version accepted".into()),
    })
}

/// The ApiVersions version to retry with, from an UNSUPPORTED_VERSION answer's v0 body.
fn fallback_version(body: &Bytes) -> i16 {
    let Ok(v0) = ApiVersionsResponse::decode(body, 0) else { return 0 };
    v0.api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .and_then(|k| ApiKey::ApiVersions.versions().highest_common(&VersionRange::new(k.min_version, k.max_version)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use krab_protocol::messages::api_versions::ApiVersion;

    fn table(entries: &[(ApiKey, i16, i16)]) -> ApiVersions {
        let response = ApiVersionsResponse {
            api_keys: entries
                .iter()
                .map(|&(k, min, max)| ApiVersion {
                    api_key: k as i16,
                    min_version: min,
                    max_version: max,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        ApiVersions::from_response("b1", &response, 3)
    }

    #[test]
    fn picks_the_highest_common_version() {
        let t = table(&[(ApiKey::Metadata, 0, 99), (ApiKey::Produce, 3, 7), (ApiKey::Fetch, 20, 30)]);
        assert_eq!(t.version_for(ApiKey::Metadata).unwrap(), ApiKey::Metadata.versions().max);
        assert_eq!(t.version_for(ApiKey::Produce).unwrap(), 7);
        let err = t.version_for(ApiKey::Fetch).unwrap_err();
        assert!(matches!(err, ClusterError::NoCommonVersion { api: ApiKey::Fetch, .. }), "{err}");
        assert!(err.to_string().contains("20..=30"), "{err}");
        assert!(matches!(t.version_for(ApiKey::JoinGroup), Err(ClusterError::UnsupportedApi { .. })));
    }

    #[test]
    fn fallback_reads_the_v0_body_and_defaults_to_zero() {
        let mut body = bytes::BytesMut::new();
        let resp = ApiVersionsResponse {
            error_code: 35,
            api_keys: vec![ApiVersion { api_key: 18, min_version: 0, max_version: 2, ..Default::default() }],
            ..Default::default()
        };
        resp.encode(&mut body, 0).unwrap();
        assert_eq!(fallback_version(&body.freeze()), 2);
        assert_eq!(fallback_version(&Bytes::from_static(&[0, 35])), 0);
    }
}
