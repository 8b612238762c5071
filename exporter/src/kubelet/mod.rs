//! Client of the kubelet pod-resources API v1 (`List`, `GetAllocatableResources`) over its
//! unix socket: which container holds which device, straight from the kubelet's device
//! manager, so attribution needs no guessing from environment variables.
//!
//! The kubelet replaces the socket when it restarts, so the connection is dropped on any
//! error and made again on the next call; the DaemonSet mounts the directory, not the file.

pub mod proto;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// Default socket path of the kubelet's pod-resources server.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// Responses are bounded: a node with thousands of containers still fits, a runaway does not.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Errors talking to the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot connect to the kubelet pod-resources socket {path}: {source}; mount the host's \
         /var/lib/kubelet/pod-resources directory or set --pod-resources-socket"
    )]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("kubelet pod-resources {call} failed: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("kubelet pod-resources {call} did not answer within {timeout:?}")]
    Timeout {
        call: &'static str,
        timeout: Duration,
    },
}

impl Error {
    /// True when the kubelet does not offer the call (old kubelet or feature gate off).
    pub fn is_unimplemented(&self) -> bool {
        matches!(self, Error::Call { status, .. } if status.code() == tonic::Code::Unimplemented)
    }
}

/// A lazily (re)connected pod-resources client.
#[derive(Debug)]
pub struct PodResourcesClient {
    socket: PathBuf,
    timeout: Duration,
    channel: Option<Channel>,
}

impl PodResourcesClient {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self {
            socket,
            timeout,
            channel: None,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `List`: every pod the kubelet knows with the devices of each container.
    pub async fn list(&mut self) -> Result<proto::ListPodResourcesResponse, Error> {
        self.unary("List", proto::LIST_PATH, proto::ListPodResourcesRequest {})
            .await
    }

    /// `GetAllocatableResources`: every device the device plugins advertise (time-slicing
    /// replicas included), so a replica's share of its GPU can be computed.
    pub async fn allocatable(&mut self) -> Result<proto::AllocatableResourcesResponse, Error> {
        self.unary(
            "GetAllocatableResources",
            proto::ALLOCATABLE_PATH,
            proto::AllocatableResourcesRequest {},
        )
        .await
    }

    async fn unary<Req, Resp>(
        &mut self,
        call: &'static str,
        path: &'static str,
        request: Req,
    ) -> Result<Resp, Error>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let timeout = self.timeout;
        let result = tokio::time::timeout(timeout, async {
            let channel = self.channel().await?;
            let mut grpc =
                tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
            grpc.ready().await.map_err(|e| Error::Call {
                call,
                status: Box::new(tonic::Status::unavailable(e.to_string())),
            })?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                codec,
            )
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| Error::Call {
                call,
                status: Box::new(status),
            })
        })
        .await
        .unwrap_or(Err(Error::Timeout { call, timeout }));
        if let Err(err) = &result {
            if !err.is_unimplemented() {
                // The socket may have been replaced (kubelet restart): start afresh next time.
                self.channel = None;
            }
        }
        result
    }

    async fn channel(&mut self) -> Result<Channel, Error> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let path = self.socket.clone();
        // The URI is required by the HTTP/2 layer but never resolved: the connector dials
        // the unix socket.
        let channel = Endpoint::from_static("http://kubelet.pod-resources")
            .connect_timeout(self.timeout)
            .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|source| Error::Connect {
                path: self.socket.clone(),
                source,
            })?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }
}
