//! Kafka protocol error codes.
//!
//! Every response carries one or more `int16` error codes. [`ErrorCode`] gives each code that
//! Kafka 3.9 defines a typed variant (codes `-1` to `127`; `99` was never assigned) and keeps any
//! other number in [`ErrorCode::Unknown`], so decoding a response from a newer broker never fails
//! just because of an unfamiliar code.
//!
//! [`ErrorCode::is_retriable`] reports whether Kafka's Java client classifies the error as
//! retriable (its exception type is a `RetriableException`): such errors are transient, and the
//! same request may succeed if sent again, usually after refreshing metadata or backing off.
//!
//! The whole enum is generated from a single table, so a code, its variant, its name and its
//! retriability cannot drift apart.

use std::fmt;

/// Generates [`ErrorCode`] and its lookups from one table.
///
/// Each row is `code => Variant, "KAFKA_NAME", retriable, "one-line doc";`.
macro_rules! error_codes {
    ($($code:literal => $variant:ident, $name:literal, $retriable:literal, $doc:literal;)+) => {
        /// A Kafka protocol error code.
        ///
        /// Variants are named after Kafka's own names (`NOT_LEADER_OR_FOLLOWER` is
        /// [`ErrorCode::NotLeaderOrFollower`]); [`ErrorCode::None`] means success. Codes this
        /// crate does not know are kept verbatim in [`ErrorCode::Unknown`].
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = concat!($doc, "\n\n`", $name, "`, code `", stringify!($code), "`.")]
                $variant,
            )+
            /// A code this crate does not know (for example one added by a newer broker).
            ///
            /// [`ErrorCode::from_code`] only produces this for numbers that have no variant of
            /// their own; building `Unknown` of a known code by hand gives a value that compares
            /// unequal to the named variant.
            Unknown(i16),
        }

        impl ErrorCode {
            /// Every known error code (everything but [`ErrorCode::Unknown`]), in ascending
            /// order of code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// Maps a wire code to its variant; numbers without one become
            /// [`ErrorCode::Unknown`].
            #[must_use]
            pub const fn from_code(code: i16) -> Self {
                match code {
                    $($code => Self::$variant,)+
                    other => Self::Unknown(other),
                }
            }

            /// The code as sent on the wire.
            #[must_use]
            pub const fn code(self) -> i16 {
                match self {
                    $(Self::$variant => $code,)+
                    Self::Unknown(code) => code,
                }
            }

            /// Kafka's name for this error, such as `"NOT_LEADER_OR_FOLLOWER"`;
            /// `"UNKNOWN_CODE"` for [`ErrorCode::Unknown`].
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                    Self::Unknown(_) => "UNKNOWN_CODE",
                }
            }

            /// Whether the error is transient, so the same request may succeed when retried
            /// (Kafka's Java client models these as `RetriableException`s).
            ///
            /// [`ErrorCode::None`] and [`ErrorCode::Unknown`] are not retriable.
            #[must_use]
            pub const fn is_retriable(self) -> bool {
                match self {
                    $(Self::$variant => $retriable,)+
                    Self::Unknown(_) => false,
                }
            }
        }
    };
}

error_codes! {
    -1 => UnknownServerError, "UNKNOWN_SERVER_ERROR", false,
        "The broker hit an unexpected failure while handling the request.";
    0 => None, "NONE", false,
        "No error: the operation succeeded.";
    1 => OffsetOutOfRange, "OFFSET_OUT_OF_RANGE", false,
        "The offset asked for lies outside the log's current range.";
    2 => CorruptMessage, "CORRUPT_MESSAGE", true,
        "A record failed its checksum or size checks, or is otherwise malformed.";
    3 => UnknownTopicOrPartition, "UNKNOWN_TOPIC_OR_PARTITION", true,
        "The broker does not host this topic or partition.";
    4 => InvalidFetchSize, "INVALID_FETCH_SIZE", false,
        "The fetch size in the request is invalid.";
    5 => LeaderNotAvailable, "LEADER_NOT_AVAILABLE", true,
        "The partition has no leader right now, typically during an election.";
    6 => NotLeaderOrFollower, "NOT_LEADER_OR_FOLLOWER", true,
        "The broker is not the leader (or not a replica) of the partition.";
    7 => RequestTimedOut, "REQUEST_TIMED_OUT", true,
        "The request did not complete in time.";
    8 => BrokerNotAvailable, "BROKER_NOT_AVAILABLE", false,
        "The broker is not available.";
    9 => ReplicaNotAvailable, "REPLICA_NOT_AVAILABLE", true,
        "The replica for the partition is not available on this broker.";
    10 => MessageTooLarge, "MESSAGE_TOO_LARGE", false,
        "A record exceeds the largest size the broker accepts.";
    11 => StaleControllerEpoch, "STALE_CONTROLLER_EPOCH", false,
        "The request came from a controller that has since been replaced.";
    12 => OffsetMetadataTooLarge, "OFFSET_METADATA_TOO_LARGE", false,
        "The metadata string attached to a committed offset is too long.";
    13 => NetworkException, "NETWORK_EXCEPTION", true,
        "The connection was closed before the response arrived.";
    14 => CoordinatorLoadInProgress, "COORDINATOR_LOAD_IN_PROGRESS", true,
        "The coordinator is still loading its state.";
    15 => CoordinatorNotAvailable, "COORDINATOR_NOT_AVAILABLE", true,
        "No coordinator is currently available.";
    16 => NotCoordinator, "NOT_COORDINATOR", true,
        "The broker is not the coordinator for this group or transactional id.";
    17 => InvalidTopicException, "INVALID_TOPIC_EXCEPTION", false,
        "The topic name is invalid or the topic may not be used this way.";
    18 => RecordListTooLarge, "RECORD_LIST_TOO_LARGE", false,
        "A record batch exceeds the broker's log segment size.";
    19 => NotEnoughReplicas, "NOT_ENOUGH_REPLICAS", true,
        "Too few in-sync replicas to accept the write.";
    20 => NotEnoughReplicasAfterAppend, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", true,
        "The write was appended, but fewer in-sync replicas than required hold it.";
    21 => InvalidRequiredAcks, "INVALID_REQUIRED_ACKS", false,
        "The produce request's `acks` value is invalid.";
    22 => IllegalGeneration, "ILLEGAL_GENERATION", false,
        "The group generation id is not the current one.";
    23 => InconsistentGroupProtocol, "INCONSISTENT_GROUP_PROTOCOL", false,
        "The member's protocols do not match those of the rest of the group.";
    24 => InvalidGroupId, "INVALID_GROUP_ID", false,
        "The group id is invalid.";
    25 => UnknownMemberId, "UNKNOWN_MEMBER_ID", false,
        "The coordinator does not know this member id.";
    26 => InvalidSessionTimeout, "INVALID_SESSION_TIMEOUT", false,
        "The session timeout is outside the range the broker allows.";
    27 => RebalanceInProgress, "REBALANCE_IN_PROGRESS", false,
        "The group is rebalancing; the member must rejoin.";
    28 => InvalidCommitOffsetSize, "INVALID_COMMIT_OFFSET_SIZE", false,
        "The size of the offset commit data is invalid.";
    29 => TopicAuthorizationFailed, "TOPIC_AUTHORIZATION_FAILED", false,
        "The principal is not authorized for the topic.";
    30 => GroupAuthorizationFailed, "GROUP_AUTHORIZATION_FAILED", false,
        "The principal is not authorized for the group.";
    31 => ClusterAuthorizationFailed, "CLUSTER_AUTHORIZATION_FAILED", false,
        "The principal is not authorized for the cluster operation.";
    32 => InvalidTimestamp, "INVALID_TIMESTAMP", false,
        "A record timestamp is outside the accepted range.";
    33 => UnsupportedSaslMechanism, "UNSUPPORTED_SASL_MECHANISM", false,
        "The broker does not offer the requested SASL mechanism.";
    34 => IllegalSaslState, "ILLEGAL_SASL_STATE", false,
        "The request is not allowed at this point of the SASL exchange.";
    35 => UnsupportedVersion, "UNSUPPORTED_VERSION", false,
        "The broker does not support this API version.";
    36 => TopicAlreadyExists, "TOPIC_ALREADY_EXISTS", false,
        "A topic of that name already exists.";
    37 => InvalidPartitions, "INVALID_PARTITIONS", false,
        "The partition count is invalid.";
    38 => InvalidReplicationFactor, "INVALID_REPLICATION_FACTOR", false,
        "The replication factor is invalid for this cluster.";
    39 => InvalidReplicaAssignment, "INVALID_REPLICA_ASSIGNMENT", false,
        "The replica assignment is invalid.";
    40 => InvalidConfig, "INVALID_CONFIG", false,
        "A configuration value is invalid.";
    41 => NotController, "NOT_CONTROLLER", true,
        "The broker is not the active controller.";
    42 => InvalidRequest, "INVALID_REQUEST", false,
        "The request is malformed or not valid for the broker.";
    43 => UnsupportedForMessageFormat, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false,
        "The topic's message format does not support this request.";
    44 => PolicyViolation, "POLICY_VIOLATION", false,
        "The request breaks a policy configured on the broker.";
    45 => OutOfOrderSequenceNumber, "OUT_OF_ORDER_SEQUENCE_NUMBER", false,
        "The broker saw a producer sequence number out of order.";
    46 => DuplicateSequenceNumber, "DUPLICATE_SEQUENCE_NUMBER", false,
        "The broker saw a producer sequence number it has already accepted.";
    47 => InvalidProducerEpoch, "INVALID_PRODUCER_EPOCH", false,
        "The producer epoch is older than the current one.";
    48 => InvalidTxnState, "INVALID_TXN_STATE", false,
        "The transactional operation is not valid in the transaction's current state.";
    49 => InvalidProducerIdMapping, "INVALID_PRODUCER_ID_MAPPING", false,
        "The producer id is not the one assigned to this transactional id.";
    50 => InvalidTransactionTimeout, "INVALID_TRANSACTION_TIMEOUT", false,
        "The transaction timeout exceeds the broker's maximum.";
    51 => ConcurrentTransactions, "CONCURRENT_TRANSACTIONS", true,
        "Another transactional operation on the same id is still in progress.";
    52 => TransactionCoordinatorFenced, "TRANSACTION_COORDINATOR_FENCED", false,
        "A newer transaction coordinator has taken over.";
    53 => TransactionalIdAuthorizationFailed, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", false,
        "The principal is not authorized for the transactional id.";
    54 => SecurityDisabled, "SECURITY_DISABLED", false,
        "Security features are turned off on the broker.";
    55 => OperationNotAttempted, "OPERATION_NOT_ATTEMPTED", false,
        "The broker skipped this operation, usually because another part of the batch failed.";
    56 => KafkaStorageError, "KAFKA_STORAGE_ERROR", true,
        "A disk error occurred while accessing the log.";
    57 => LogDirNotFound, "LOG_DIR_NOT_FOUND", false,
        "The requested log directory is not configured on the broker.";
    58 => SaslAuthenticationFailed, "SASL_AUTHENTICATION_FAILED", false,
        "SASL authentication failed.";
    59 => UnknownProducerId, "UNKNOWN_PRODUCER_ID", false,
        "The broker holds no state for this producer id.";
    60 => ReassignmentInProgress, "REASSIGNMENT_IN_PROGRESS", false,
        "A partition reassignment is underway.";
    61 => DelegationTokenAuthDisabled, "DELEGATION_TOKEN_AUTH_DISABLED", false,
        "Delegation tokens are not enabled.";
    62 => DelegationTokenNotFound, "DELEGATION_TOKEN_NOT_FOUND", false,
        "No such delegation token exists.";
    63 => DelegationTokenOwnerMismatch, "DELEGATION_TOKEN_OWNER_MISMATCH", false,
        "The principal is not the token's owner or renewer.";
    64 => DelegationTokenRequestNotAllowed, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", false,
        "Delegation token requests are refused on this kind of connection.";
    65 => DelegationTokenAuthorizationFailed, "DELEGATION_TOKEN_AUTHORIZATION_FAILED", false,
        "The principal is not authorized for the delegation token.";
    66 => DelegationTokenExpired, "DELEGATION_TOKEN_EXPIRED", false,
        "The delegation token has expired.";
    67 => InvalidPrincipalType, "INVALID_PRINCIPAL_TYPE", false,
        "The principal type is not supported.";
    68 => NonEmptyGroup, "NON_EMPTY_GROUP", false,
        "The group still has members.";
    69 => GroupIdNotFound, "GROUP_ID_NOT_FOUND", false,
        "No group with that id exists.";
    70 => FetchSessionIdNotFound, "FETCH_SESSION_ID_NOT_FOUND", true,
        "The broker has no fetch session with that id.";
    71 => InvalidFetchSessionEpoch, "INVALID_FETCH_SESSION_EPOCH", true,
        "The fetch session epoch does not match the broker's.";
    72 => ListenerNotFound, "LISTENER_NOT_FOUND", true,
        "The leader has no listener matching the one the request arrived on.";
    73 => TopicDeletionDisabled, "TOPIC_DELETION_DISABLED", false,
        "Deleting topics is disabled on the cluster.";
    74 => FencedLeaderEpoch, "FENCED_LEADER_EPOCH", true,
        "The request's leader epoch is older than the broker's.";
    75 => UnknownLeaderEpoch, "UNKNOWN_LEADER_EPOCH", true,
        "The request's leader epoch is newer than the broker's.";
    76 => UnsupportedCompressionType, "UNSUPPORTED_COMPRESSION_TYPE", false,
        "The client cannot handle the partition's compression type.";
    77 => StaleBrokerEpoch, "STALE_BROKER_EPOCH", false,
        "The broker epoch in the request is out of date.";
    78 => OffsetNotAvailable, "OFFSET_NOT_AVAILABLE", true,
        "The offset is not yet available, e.g. right after a leader change.";
    79 => MemberIdRequired, "MEMBER_ID_REQUIRED", false,
        "The member must rejoin with the member id the coordinator assigned.";
    80 => PreferredLeaderNotAvailable, "PREFERRED_LEADER_NOT_AVAILABLE", true,
        "The preferred leader cannot take leadership now.";
    81 => GroupMaxSizeReached, "GROUP_MAX_SIZE_REACHED", false,
        "The group has reached its maximum number of members.";
    82 => FencedInstanceId, "FENCED_INSTANCE_ID", false,
        "Another member with the same static group instance id has taken over.";
    83 => EligibleLeadersNotAvailable, "ELIGIBLE_LEADERS_NOT_AVAILABLE", true,
        "No eligible leader is available for the partition.";
    84 => ElectionNotNeeded, "ELECTION_NOT_NEEDED", true,
        "The partition already has the desired leader.";
    85 => NoReassignmentInProgress, "NO_REASSIGNMENT_IN_PROGRESS", false,
        "There is no partition reassignment to act on.";
    86 => GroupSubscribedToTopic, "GROUP_SUBSCRIBED_TO_TOPIC", false,
        "The group's offsets for a topic cannot be deleted while it is subscribed to it.";
    87 => InvalidRecord, "INVALID_RECORD", false,
        "The broker's validation rejected a record.";
    88 => UnstableOffsetCommit, "UNSTABLE_OFFSET_COMMIT", true,
        "Pending transactional offset commits must settle first.";
    89 => ThrottlingQuotaExceeded, "THROTTLING_QUOTA_EXCEEDED", true,
        "A throttling quota was exceeded.";
    90 => ProducerFenced, "PRODUCER_FENCED", false,
        "A newer producer with the same transactional id has taken over.";
    91 => ResourceNotFound, "RESOURCE_NOT_FOUND", false,
        "The request names a resource that does not exist.";
    92 => DuplicateResource, "DUPLICATE_RESOURCE", false,
        "The request names the same resource more than once.";
    93 => UnacceptableCredential, "UNACCEPTABLE_CREDENTIAL", false,
        "The credential does not meet the acceptance criteria.";
    94 => InconsistentVoterSet, "INCONSISTENT_VOTER_SET", false,
        "Sender and receiver disagree on the KRaft voter set.";
    95 => InvalidUpdateVersion, "INVALID_UPDATE_VERSION", false,
        "The update version is invalid.";
    96 => FeatureUpdateFailed, "FEATURE_UPDATE_FAILED", false,
        "Finalized features could not be updated.";
    97 => PrincipalDeserializationFailure, "PRINCIPAL_DESERIALIZATION_FAILURE", false,
        "The forwarded request's principal could not be deserialized.";
    98 => SnapshotNotFound, "SNAPSHOT_NOT_FOUND", false,
        "The requested snapshot does not exist.";
    100 => UnknownTopicId, "UNKNOWN_TOPIC_ID", true,
        "The broker does not host a topic with this id.";
    101 => DuplicateBrokerRegistration, "DUPLICATE_BROKER_REGISTRATION", false,
        "Another broker already registered this broker id.";
    102 => BrokerIdNotRegistered, "BROKER_ID_NOT_REGISTERED", false,
        "The broker id has not been registered.";
    103 => InconsistentTopicId, "INCONSISTENT_TOPIC_ID", true,
        "The topic id in the request differs from the one in the log.";
    104 => InconsistentClusterId, "INCONSISTENT_CLUSTER_ID", false,
        "The cluster id in the request differs from the server's.";
    105 => TransactionalIdNotFound, "TRANSACTIONAL_ID_NOT_FOUND", false,
        "No such transactional id exists.";
    106 => FetchSessionTopicIdError, "FETCH_SESSION_TOPIC_ID_ERROR", true,
        "The fetch session mixed up topic ids.";
    107 => IneligibleReplica, "INELIGIBLE_REPLICA", false,
        "The proposed ISR includes a replica that may not join it.";
    108 => NewLeaderElected, "NEW_LEADER_ELECTED", false,
        "The partition state changed, but a different leader has been elected meanwhile.";
    109 => OffsetMovedToTieredStorage, "OFFSET_MOVED_TO_TIERED_STORAGE", false,
        "The offset now lives only in tiered storage.";
    110 => FencedMemberEpoch, "FENCED_MEMBER_EPOCH", false,
        "The member epoch is fenced; the member must give up its partitions and rejoin.";
    111 => UnreleasedInstanceId, "UNRELEASED_INSTANCE_ID", false,
        "Another member still holds this static instance id.";
    112 => UnsupportedAssignor, "UNSUPPORTED_ASSIGNOR", false,
        "The group does not support the requested assignor or its versions.";
    113 => StaleMemberEpoch, "STALE_MEMBER_EPOCH", false,
        "The member epoch is out of date; retry after learning the new one.";
    114 => MismatchedEndpointType, "MISMATCHED_ENDPOINT_TYPE", false,
        "The request reached an endpoint of the wrong kind.";
    115 => UnsupportedEndpointType, "UNSUPPORTED_ENDPOINT_TYPE", false,
        "This kind of endpoint is not supported.";
    116 => UnknownControllerId, "UNKNOWN_CONTROLLER_ID", false,
        "The controller id is not known.";
    117 => UnknownSubscriptionId, "UNKNOWN_SUBSCRIPTION_ID", false,
        "The telemetry subscription id is unknown or outdated.";
    118 => TelemetryTooLarge, "TELEMETRY_TOO_LARGE", false,
        "The pushed telemetry exceeds the broker's size limit.";
    119 => InvalidRegistration, "INVALID_REGISTRATION", false,
        "The controller rejected the broker registration.";
    120 => TransactionAbortable, "TRANSACTION_ABORTABLE", false,
        "The transaction hit an error; aborting it lets the transactional id be used again.";
    121 => InvalidRecordState, "INVALID_RECORD_STATE", false,
        "The record is not in a state that allows the acknowledgement.";
    122 => ShareSessionNotFound, "SHARE_SESSION_NOT_FOUND", true,
        "The broker has no such share session.";
    123 => InvalidShareSessionEpoch, "INVALID_SHARE_SESSION_EPOCH", true,
        "The share session epoch does not match the broker's.";
    124 => FencedStateEpoch, "FENCED_STATE_EPOCH", false,
        "The share-group state epoch does not match the share coordinator's.";
    125 => InvalidVoterKey, "INVALID_VOTER_KEY", false,
        "The voter key does not match the receiving replica's.";
    126 => DuplicateVoter, "DUPLICATE_VOTER", false,
        "The voter already belongs to the voter set.";
    127 => VoterNotFound, "VOTER_NOT_FOUND", false,
        "The voter does not belong to the voter set.";
}

impl ErrorCode {
    /// Whether this is [`ErrorCode::None`], i.e. success.
    #[must_use]
    pub const fn is_ok(self) -> bool {
        matches!(self, Self::None)
    }

    /// Whether this is anything other than [`ErrorCode::None`].
    #[must_use]
    pub const fn is_err(self) -> bool {
        !self.is_ok()
    }

    /// `Ok(())` for [`ErrorCode::None`], `Err(self)` otherwise, for use with `?`.
    ///
    /// # Errors
    ///
    /// Returns `self` when it is not [`ErrorCode::None`].
    pub const fn into_result(self) -> Result<(), ErrorCode> {
        if self.is_ok() { Ok(()) } else { Err(self) }
    }
}

impl From<i16> for ErrorCode {
    fn from(code: i16) -> Self {
        Self::from_code(code)
    }
}

impl From<ErrorCode> for i16 {
    fn from(error: ErrorCode) -> Self {
        error.code()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// `NOT_LEADER_OR_FOLLOWER` -> `NotLeaderOrFollower`.
    fn camel(name: &str) -> String {
        name.split('_')
            .map(|word| {
                let mut chars = word.chars();
                let first = chars.next().expect("empty word in name");
                first.to_string() + &chars.as_str().to_ascii_lowercase()
            })
            .collect()
    }

    #[test]
    fn every_known_code_round_trips() {
        for &error in ErrorCode::ALL {
            assert!(!matches!(error, ErrorCode::Unknown(_)));
            assert_eq!(ErrorCode::from_code(error.code()), error);
            assert_eq!(ErrorCode::from(i16::from(error)), error);
        }
        // Every i16 survives decode/encode, known or not.
        for code in i16::MIN..=i16::MAX {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
    }

    #[test]
    fn codes_and_names_are_unique_and_consistent() {
        let codes: HashSet<i16> = ErrorCode::ALL.iter().map(|e| e.code()).collect();
        let names: HashSet<&str> = ErrorCode::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert!(!names.contains("UNKNOWN_CODE"));
        for &error in ErrorCode::ALL {
            // The variant is the UpperCamelCase form of Kafka's name.
            assert_eq!(format!("{error:?}"), camel(error.name()), "{error}");
        }
        // ALL is sorted by code.
        assert!(ErrorCode::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
    }

    #[test]
    fn covers_kafka_3_9_range() {
        assert_eq!(ErrorCode::ALL.first(), Some(&ErrorCode::UnknownServerError));
        assert_eq!(ErrorCode::ALL.last(), Some(&ErrorCode::VoterNotFound));
        assert_eq!(ErrorCode::VoterNotFound.code(), 127);
        // -1..=127 minus the never-assigned 99.
        assert_eq!(ErrorCode::ALL.len(), 128);
        assert_eq!(ErrorCode::from_code(99), ErrorCode::Unknown(99));
    }

    #[test]
    fn spot_checks() {
        let cases = [
            (-1, "UNKNOWN_SERVER_ERROR", false),
            (0, "NONE", false),
            (1, "OFFSET_OUT_OF_RANGE", false),
            (2, "CORRUPT_MESSAGE", true),
            (3, "UNKNOWN_TOPIC_OR_PARTITION", true),
            (5, "LEADER_NOT_AVAILABLE", true),
            (6, "NOT_LEADER_OR_FOLLOWER", true),
            (7, "REQUEST_TIMED_OUT", true),
            (8, "BROKER_NOT_AVAILABLE", false),
            (13, "NETWORK_EXCEPTION", true),
            (16, "NOT_COORDINATOR", true),
            (27, "REBALANCE_IN_PROGRESS", false),
            (35, "UNSUPPORTED_VERSION", false),
            (56, "KAFKA_STORAGE_ERROR", true),
            (74, "FENCED_LEADER_EPOCH", true),
            (75, "UNKNOWN_LEADER_EPOCH", true),
            (76, "UNSUPPORTED_COMPRESSION_TYPE", false),
            (87, "INVALID_RECORD", false),
            (100, "UNKNOWN_TOPIC_ID", true),
            (120, "TRANSACTION_ABORTABLE", false),
            (127, "VOTER_NOT_FOUND", false),
        ];
        for (code, name, retriable) in cases {
            let error = ErrorCode::from_code(code);
            assert_eq!(error.name(), name);
            assert_eq!(error.is_retriable(), retriable, "{error}");
        }
        assert_eq!(ErrorCode::from_code(6), ErrorCode::NotLeaderOrFollower);
        assert_eq!(ErrorCode::from_code(3), ErrorCode::UnknownTopicOrPartition);
        assert_eq!(ErrorCode::from_code(35), ErrorCode::UnsupportedVersion);
        assert_eq!(ErrorCode::from_code(74), ErrorCode::FencedLeaderEpoch);
    }

    #[test]
    fn retriable_set() {
        let retriable: Vec<i16> = ErrorCode::ALL.iter().filter(|e| e.is_retriable()).map(|e| e.code()).collect();
        let expected = [
            2, 3, 5, 6, 7, 9, 13, 14, 15, 16, 19, 20, 41, 51, 56, 70, 71, 72, 74, 75, 78, 80, 83, 84, 88, 89, 100, 103,
            106, 122, 123,
        ];
        assert_eq!(retriable, expected);
    }

    #[test]
    fn unknown_codes_are_kept() {
        for code in [9999, -2, 128, i16::MIN, i16::MAX] {
            let error = ErrorCode::from(code);
            assert_eq!(error, ErrorCode::Unknown(code));
            assert_eq!(error.code(), code);
            assert_eq!(i16::from(error), code);
            assert_eq!(error.name(), "UNKNOWN_CODE");
            assert!(!error.is_retriable());
            assert!(!error.is_ok());
        }
        assert_eq!(ErrorCode::from_code(9999).to_string(), "UNKNOWN_CODE (9999)");
        assert_eq!(ErrorCode::from_code(-2).to_string(), "UNKNOWN_CODE (-2)");
    }

    #[test]
    fn ok_display_and_error() {
        assert!(ErrorCode::None.is_ok());
        assert!(!ErrorCode::None.is_err());
        assert_eq!(ErrorCode::None.into_result(), Ok(()));
        assert!(!ErrorCode::NotLeaderOrFollower.is_ok());
        assert!(ErrorCode::NotLeaderOrFollower.is_err());
        assert_eq!(ErrorCode::NotLeaderOrFollower.into_result(), Err(ErrorCode::NotLeaderOrFollower));
        assert_eq!(ErrorCode::NotLeaderOrFollower.to_string(), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(ErrorCode::UnknownServerError.to_string(), "UNKNOWN_SERVER_ERROR (-1)");
        let boxed: Box<dyn std::error::Error> = Box::new(ErrorCode::RequestTimedOut);
        assert_eq!(boxed.to_string(), "REQUEST_TIMED_OUT (7)");
    }
}
