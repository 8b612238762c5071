//! A kubelet pod-resources stand-in: a tonic gRPC server on a unix socket serving
//! `v1.PodResourcesLister/List` and `GetAllocatableResources` with the exporter's own
//! hand-written prost messages, so the exporter's production client runs unchanged against
//! the real wire format. What it answers comes from a JSON fixture (the proto's fields in
//! snake_case) and can change while the exporter runs.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use gpuscale_exporter::kubelet::proto;
use serde::Deserialize;
use tonic::codegen::{BoxFuture, http};

/// The fixture: pods with their containers' devices, and what the device plugins advertise
/// (`None`: `GetAllocatableResources` answers Unimplemented, like an old kubelet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub pod_resources: Vec<PodFixture>,
    #[serde(default)]
    pub allocatable: Option<Vec<DevicesFixture>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodFixture {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub containers: Vec<ContainerFixture>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerFixture {
    pub name: String,
    #[serde(default)]
    pub devices: Vec<DevicesFixture>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesFixture {
    pub resource_name: String,
    pub device_ids: Vec<String>,
}

impl Fixture {
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("bad kubelet fixture: {e}"))
    }

    fn devices(d: &DevicesFixture) -> proto::ContainerDevices {
        proto::ContainerDevices {
            resource_name: d.resource_name.clone(),
            device_ids: d.device_ids.clone(),
            topology: Some(proto::TopologyInfo {
                nodes: vec![proto::NumaNode { id: 0 }],
            }),
        }
    }

    fn list(&self) -> proto::ListPodResourcesResponse {
        proto::ListPodResourcesResponse {
            pod_resources: self
                .pod_resources
                .iter()
                .map(|p| proto::PodResources {
                    name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    containers: p
                        .containers
                        .iter()
                        .map(|c| proto::ContainerResources {
                            name: c.name.clone(),
                            devices: c.devices.iter().map(Self::devices).collect(),
                            cpu_ids: vec![2, 3],
                            ..Default::default()
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn allocatable(&self) -> Option<proto::AllocatableResourcesResponse> {
        self.allocatable
            .as_ref()
            .map(|devices| proto::AllocatableResourcesResponse {
                devices: devices.iter().map(Self::devices).collect(),
                cpu_ids: (0..16).collect(),
                ..Default::default()
            })
    }
}

#[derive(Default)]
struct State {
    fixture: Mutex<Fixture>,
    list_calls: AtomicUsize,
    allocatable_calls: AtomicUsize,
}

/// A running stand-in; stops (and removes its socket) when dropped.
pub struct KubeletStandin {
    pub socket: PathBuf,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Like a kubelet that exits: its connections close (HTTP/2 GOAWAY) and the socket goes.
impl Drop for KubeletStandin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl KubeletStandin {
    /// Binds `socket` (replacing any file there, as the kubelet does) inside a tokio runtime.
    pub fn start(socket: &Path, fixture: Fixture) -> Self {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let state = Arc::new(State {
            fixture: Mutex::new(fixture),
            ..State::default()
        });
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let next = listener.accept().await.map(|(stream, _)| stream);
            Some((next, listener))
        });
        let service = Lister(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(service, incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            socket: socket.to_path_buf(),
            state,
            stop: Some(stop),
        }
    }

    pub fn set_fixture(&self, fixture: Fixture) {
        *self.state.fixture.lock().unwrap() = fixture;
    }

    pub fn list_calls(&self) -> usize {
        self.state.list_calls.load(Ordering::SeqCst)
    }

    pub fn allocatable_calls(&self) -> usize {
        self.state.allocatable_calls.load(Ordering::SeqCst)
    }
}

/// The `PodResourcesLister` service, routed by gRPC path as tonic's generated servers do.
#[derive(Clone)]
struct Lister(Arc<State>);

struct ListCall(Arc<State>);

impl tonic::server::UnaryService<proto::ListPodResourcesRequest> for ListCall {
    type Response = proto::ListPodResourcesResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;
    fn call(&mut self, _: tonic::Request<proto::ListPodResourcesRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.list_calls.fetch_add(1, Ordering::SeqCst);
            let list = state.fixture.lock().unwrap().list();
            Ok(tonic::Response::new(list))
        })
    }
}

struct AllocatableCall(Arc<State>);

impl tonic::server::UnaryService<proto::AllocatableResourcesRequest> for AllocatableCall {
    type Response = proto::AllocatableResourcesResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;
    fn call(&mut self, _: tonic::Request<proto::AllocatableResourcesRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.allocatable_calls.fetch_add(1, Ordering::SeqCst);
            match state.fixture.lock().unwrap().allocatable() {
                Some(answer) => Ok(tonic::Response::new(answer)),
                None => Err(tonic::Status::unimplemented(
                    "GetAllocatableResources is not enabled on this kubelet",
                )),
            }
        })
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Lister {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let state = self.0.clone();
        match request.uri().path() {
            proto::LIST_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(ListCall(state), request).await)
            }),
            proto::ALLOCATABLE_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(AllocatableCall(state), request).await)
            }),
            _ => Box::pin(
                async move { Ok(tonic::Status::unimplemented("no such method").into_http()) },
            ),
        }
    }
}

impl tonic::server::NamedService for Lister {
    const NAME: &'static str = proto::SERVICE_NAME;
}
