//! ACLs (for Kafka's authorizer, e.g. `StandardAuthorizer`): describe, create and delete
//! bindings of a principal, host, operation and permission to a resource pattern.

use crate::client::{Admin, retried};
use crate::error::{AdminError, check};
use crate::resource::Results;
use krab_protocol::ApiKey;
use krab_protocol::messages::create_acls::AclCreation;
use krab_protocol::messages::delete_acls::DeleteAclsFilter;
use krab_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use std::fmt;

macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A value this client does not know (the protocol's number).
            Unknown(i8),
        }

        impl $name {
            pub(crate) fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)*
                    $name::Unknown(c) => c,
                }
            }

            pub(crate) fn from_code(code: i8) -> Self {
                match code {
                    $($code => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }
        }
    };
}

codes!(
    /// The kind of resource an ACL protects.
    ResourceType {
        /// Any kind (filters only).
        Any = 1,
        /// A topic.
        Topic = 2,
        /// A consumer group.
        Group = 3,
        /// The cluster.
        Cluster = 4,
        /// A transactional id.
        TransactionalId = 5,
        /// A delegation token.
        DelegationToken = 6,
        /// A user (for quotas and tokens).
        User = 7,
    }
);

codes!(
    /// How a resource name matches.
    PatternType {
        /// Any pattern (filters only).
        Any = 1,
        /// Whatever would match a given name, literal or prefixed (filters only).
        Match = 2,
        /// The exact name (`*` matches every resource).
        Literal = 3,
        /// Every name starting with it.
        Prefixed = 4,
    }
);

codes!(
    /// An operation an ACL allows or denies.
    AclOperation {
        /// Any operation (filters only).
        Any = 1,
        /// Every operation.
        All = 2,
        /// Read (consume, fetch offsets).
        Read = 3,
        /// Write (produce).
        Write = 4,
        /// Create.
        Create = 5,
        /// Delete.
        Delete = 6,
        /// Alter.
        Alter = 7,
        /// Describe (metadata, list offsets).
        Describe = 8,
        /// Inter-broker actions.
        ClusterAction = 9,
        /// Describe configs.
        DescribeConfigs = 10,
        /// Alter configs.
        AlterConfigs = 11,
        /// Idempotent produce (implied by Write on a topic since Kafka 3.0).
        IdempotentWrite = 12,
        /// Create delegation tokens.
        CreateTokens = 13,
        /// Describe delegation tokens.
        DescribeTokens = 14,
    }
);

codes!(
    /// Whether an ACL allows or denies.
    AclPermission {
        /// Either (filters only).
        Any = 1,
        /// Denies (wins over an allow).
        Deny = 2,
        /// Allows.
        Allow = 3,
    }
);

/// One ACL: `principal` from `host` may (or may not) do `operation` on the resources matching
/// `resource_type`/`resource_name`/`pattern`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The resource name or prefix (`*`: all).
    pub resource_name: String,
    /// How the name matches.
    pub pattern: PatternType,
    /// The principal, e.g. `User:alice`.
    pub principal: String,
    /// The host (`*`: any).
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

impl AclBinding {
    /// Allows `principal` `operation` on the topic named `topic`, from any host.
    pub fn allow_topic(topic: impl Into<String>, principal: impl Into<String>, operation: AclOperation) -> Self {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: topic.into(),
            pattern: PatternType::Literal,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission: AclPermission::Allow,
        }
    }

    /// The filter matching exactly this binding.
    pub fn to_filter(&self) -> AclFilter {
        AclFilter {
            resource_type: self.resource_type,
            resource_name: Some(self.resource_name.clone()),
            pattern: self.pattern,
            principal: Some(self.principal.clone()),
            host: Some(self.host.clone()),
            operation: self.operation,
            permission: self.permission,
        }
    }
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {} {:?} on {:?} {} ({:?}) from {}",
            self.permission,
            self.principal,
            self.operation,
            self.resource_type,
            self.resource_name,
            self.pattern,
            self.host
        )
    }
}

/// A filter over ACL bindings: `None` and the `Any` variants match everything.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclFilter {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The resource name.
    pub resource_name: Option<String>,
    /// The pattern type.
    pub pattern: PatternType,
    /// The principal.
    pub principal: Option<String>,
    /// The host.
    pub host: Option<String>,
    /// The operation.
    pub operation: AclOperation,
    /// The permission.
    pub permission: AclPermission,
}

impl AclFilter {
    /// Matches every binding.
    pub fn any() -> Self {
        AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermission::Any,
        }
    }

    /// Matches every binding of the resource named `name` of this type.
    pub fn resource(resource_type: ResourceType, name: impl Into<String>) -> Self {
        AclFilter { resource_type, resource_name: Some(name.into()), pattern: PatternType::Literal, ..Self::any() }
    }
}

impl fmt::Display for AclFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACLs matching {self:?}")
    }
}

fn binding(
    resource_type: i8,
    resource_name: String,
    pattern: i8,
    principal: String,
    host: String,
    operation: i8,
    permission: i8,
) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(resource_type),
        resource_name,
        pattern: PatternType::from_code(pattern),
        principal,
        host,
        operation: AclOperation::from_code(operation),
        permission: AclPermission::from_code(permission),
    }
}

impl Admin {
    /// The ACL bindings matching `filter`. SECURITY_DISABLED when the cluster has no authorizer.
    pub async fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, AdminError> {
        self.whole(ApiKey::DescribeAcls, |_, _| async move {
            let broker = self.any().await?;
            let r = broker
                .call(|_| DescribeAclsRequest {
                    resource_type_filter: filter.resource_type.code(),
                    resource_name_filter: filter.resource_name.clone(),
                    pattern_type_filter: filter.pattern.code(),
                    principal_filter: filter.principal.clone(),
                    host_filter: filter.host.clone(),
                    operation: filter.operation.code(),
                    permission_type: filter.permission.code(),
                    ..Default::default()
                })
                .await?;
            check(ApiKey::DescribeAcls, || filter.to_string(), r.error_code, r.error_message.as_ref())?;
            let mut out = Vec::new();
            for res in r.resources {
                for a in res.acls {
                    out.push(binding(
                        res.resource_type,
                        res.resource_name.clone(),
                        res.pattern_type,
                        a.principal,
                        a.host,
                        a.operation,
                        a.permission_type,
                    ));
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    /// Creates ACL bindings; each binding's result is its own.
    pub async fn create_acls(&self, bindings: &[AclBinding]) -> Result<Results<AclBinding, ()>, AdminError> {
        let results = self
            .each(ApiKey::CreateAcls, bindings.to_vec(), retried, |asked: Vec<AclBinding>, _, _| async move {
                let broker = self.any().await?;
                let r = broker
                    .call(|_| CreateAclsRequest {
                        creations: asked
                            .iter()
                            .map(|b| AclCreation {
                                resource_type: b.resource_type.code(),
                                resource_name: b.resource_name.clone(),
                                resource_pattern_type: b.pattern.code(),
                                principal: b.principal.clone(),
                                host: b.host.clone(),
                                operation: b.operation.code(),
                                permission_type: b.permission.code(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .await?;
                if r.results.len() != asked.len() {
                    return Err(AdminError::Malformed {
                        api: ApiKey::CreateAcls,
                        detail: format!("{} results for {} bindings", r.results.len(), asked.len()),
                    });
                }
                // Results come in the order of the creations.
                Ok(asked
                    .into_iter()
                    .zip(r.results)
                    .map(|(b, res)| {
                        let result = check(
                            ApiKey::CreateAcls,
                            || format!("ACL {b}"),
                            res.error_code,
                            res.error_message.as_ref(),
                        );
                        (b, result)
                    })
                    .collect())
            })
            .await;
        Ok(results)
    }

    /// Deletes the bindings matching each filter; each filter's result lists what it deleted.
    pub async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Results<AclFilter, Vec<AclBinding>>, AdminError> {
        let results = self
            .each(ApiKey::DeleteAcls, filters.to_vec(), retried, |asked: Vec<AclFilter>, _, _| async move {
                let broker = self.any().await?;
                let r = broker
                    .call(|_| DeleteAclsRequest {
                        filters: asked
                            .iter()
                            .map(|f| DeleteAclsFilter {
                                resource_type_filter: f.resource_type.code(),
                                resource_name_filter: f.resource_name.clone(),
                                pattern_type_filter: f.pattern.code(),
                                principal_filter: f.principal.clone(),
                                host_filter: f.host.clone(),
                                operation: f.operation.code(),
                                permission_type: f.permission.code(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .await?;
                if r.filter_results.len() != asked.len() {
                    return Err(AdminError::Malformed {
                        api: ApiKey::DeleteAcls,
                        detail: format!("{} results for {} filters", r.filter_results.len(), asked.len()),
                    });
                }
                Ok(asked
                    .into_iter()
                    .zip(r.filter_results)
                    .map(|(f, res)| {
                        let result =
                            check(ApiKey::DeleteAcls, || f.to_string(), res.error_code, res.error_message.as_ref())
                                .and_then(|()| {
                                    res.matching_acls
                                        .into_iter()
                                        .map(|m| {
                                            check(
                                                ApiKey::DeleteAcls,
                                                || f.to_string(),
                                                m.error_code,
                                                m.error_message.as_ref(),
                                            )?;
                                            Ok(binding(
                                                m.resource_type,
                                                m.resource_name,
                                                m.pattern_type,
                                                m.principal,
                                                m.host,
                                                m.operation,
                                                m.permission_type,
                                            ))
                                        })
                                        .collect()
                                });
                        (f, result)
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
    fn codes_round_trip_and_unknown_ones_survive() {
        for c in 0..20 {
            assert_eq!(AclOperation::from_code(c).code(), c);
            assert_eq!(ResourceType::from_code(c).code(), c);
            assert_eq!(PatternType::from_code(c).code(), c);
            assert_eq!(AclPermission::from_code(c).code(), c);
        }
        assert_eq!(AclOperation::from_code(4), AclOperation::Write);
        assert_eq!(AclOperation::from_code(0), AclOperation::Unknown(0));
        assert_eq!(ResourceType::Topic.code(), 2);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(AclPermission::Deny.code(), 2);
    }
}
