//! How a fake broker answers one request, and requests handed to the test to answer later.

use crate::broker::{Ctx, dispatch};
use bytes::Bytes;
use krab_protocol::messages::{
    AnyRequest, AnyResponse, ApiVersionsResponse, CreateAclsResponse, CreatePartitionsResponse, CreateTopicsResponse,
    DeleteAclsResponse, DeleteGroupsResponse, DeleteRecordsResponse, DeleteTopicsResponse, DescribeAclsResponse,
    DescribeClusterResponse, DescribeConfigsResponse, DescribeGroupsResponse, ElectLeadersResponse,
    FindCoordinatorResponse, IncrementalAlterConfigsResponse, InitProducerIdResponse, ListGroupsResponse,
    ListOffsetsResponse, MetadataResponse, OffsetDeleteResponse, OffsetFetchResponse, ProduceResponse, RequestHeader,
};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the fake broker answers one request.
pub enum Reply {
    /// Whatever the default handler does for this request.
    Default,
    /// This response, encoded at the request's version, with the right response header.
    Respond(AnyResponse),
    /// This response body encoded at another version (e.g. the v0 body of an ApiVersions
    /// UNSUPPORTED_VERSION answer); the header still follows the request's version.
    RespondAt(AnyResponse, i16),
    /// A frame whose header is the request's correlation id (header v0) and whose body is these
    /// bytes, verbatim.
    RawBody(Bytes),
    /// Bytes written to the socket verbatim (no size prefix added).
    RawFrame(Bytes),
    /// The reply this future yields, once it does (delays, gates).
    Later(Pin<Box<dyn Future<Output = Reply> + Send>>),
    /// Hands the request to the test as a [`Held`]: the test answers it when it likes, in any
    /// order relative to other requests.
    Hold(mpsc::UnboundedSender<Held>),
    /// No answer, ever.
    Never,
    /// Closes the connection (after writing whatever was answered before).
    Close,
}

impl Reply {
    /// Answers with a response.
    pub fn respond(response: impl IntoAny) -> Reply {
        Reply::Respond(response.into_any())
    }

    /// Answers with `reply` after `delay` (tokio time: works with a paused clock).
    pub fn after(delay: Duration, reply: Reply) -> Reply {
        Reply::Later(Box::pin(async move {
            tokio::time::sleep(delay).await;
            reply
        }))
    }

    /// Sends only a 4-byte size prefix announcing a frame of `len` bytes, and nothing else.
    pub fn huge_prefix(len: u32) -> Reply {
        Reply::RawFrame(Bytes::copy_from_slice(&len.to_be_bytes()))
    }
}

/// Typed responses the fake can send.
pub trait IntoAny {
    /// Wraps `self` into an [`AnyResponse`].
    fn into_any(self) -> AnyResponse;
}

macro_rules! into_any {
    ($($ty:ident => $variant:ident),* $(,)?) => {$(
        impl IntoAny for $ty {
            fn into_any(self) -> AnyResponse {
                AnyResponse::$variant(Box::new(self))
            }
        }
    )*};
}

into_any!(
    MetadataResponse => Metadata,
    ApiVersionsResponse => ApiVersions,
    ProduceResponse => Produce,
    CreateTopicsResponse => CreateTopics,
    DeleteTopicsResponse => DeleteTopics,
    InitProducerIdResponse => InitProducerId,
    // The admin APIs.
    FindCoordinatorResponse => FindCoordinator,
    DescribeGroupsResponse => DescribeGroups,
    ListGroupsResponse => ListGroups,
    DeleteGroupsResponse => DeleteGroups,
    OffsetFetchResponse => OffsetFetch,
    OffsetDeleteResponse => OffsetDelete,
    ListOffsetsResponse => ListOffsets,
    DeleteRecordsResponse => DeleteRecords,
    DescribeConfigsResponse => DescribeConfigs,
    IncrementalAlterConfigsResponse => IncrementalAlterConfigs,
    CreatePartitionsResponse => CreatePartitions,
    ElectLeadersResponse => ElectLeaders,
    DescribeAclsResponse => DescribeAcls,
    CreateAclsResponse => CreateAcls,
    DeleteAclsResponse => DeleteAcls,
    DescribeClusterResponse => DescribeCluster,
);

impl IntoAny for AnyResponse {
    fn into_any(self) -> AnyResponse {
        self
    }
}

/// A request the handler handed to the test ([`Reply::Hold`]); answer it with one of its
/// methods. Dropping it means the request is never answered.
pub struct Held {
    pub(crate) ctx: Ctx,
}

impl Held {
    /// The request header.
    pub fn header(&self) -> &RequestHeader {
        &self.ctx.header
    }

    /// The request.
    pub fn request(&self) -> &AnyRequest {
        &self.ctx.request
    }

    /// The topics a Metadata request asks for (empty for other requests or "all topics").
    pub fn metadata_topics(&self) -> Vec<String> {
        match &self.ctx.request {
            AnyRequest::Metadata(m) => m.topics.iter().flatten().filter_map(|t| t.name.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Answers with `reply`. The answer is queued on the connection before this returns, so
    /// answers given one after the other are written in that order.
    pub fn reply(self, reply: Reply) {
        dispatch(self.ctx, reply);
    }

    /// Answers with a response.
    pub fn respond(self, response: impl IntoAny) {
        self.reply(Reply::respond(response));
    }

    /// Answers as the default handler would (from the state at this moment).
    pub fn respond_default(self) {
        self.reply(Reply::Default);
    }

    /// Closes the connection the request came on.
    pub fn close(self) {
        self.reply(Reply::Close);
    }
}
