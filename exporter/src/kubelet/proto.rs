//! The kubelet pod-resources API v1 messages, written by hand with prost's derive so the build
//! needs no `protoc`. Field numbers follow `k8s.io/kubelet/pkg/apis/podresources/v1/api.proto`
//! (package `v1`, service `PodResourcesLister`); fields this exporter does not read are still
//! declared where they are cheap, and anything newer is skipped by prost as an unknown field.

/// gRPC path of `PodResourcesLister.List`.
pub const LIST_PATH: &str = "/v1.PodResourcesLister/List";
/// gRPC path of `PodResourcesLister.GetAllocatableResources`.
pub const ALLOCATABLE_PATH: &str = "/v1.PodResourcesLister/GetAllocatableResources";
/// The service name, as the server side registers it.
pub const SERVICE_NAME: &str = "v1.PodResourcesLister";

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListPodResourcesRequest {}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListPodResourcesResponse {
    #[prost(message, repeated, tag = "1")]
    pub pod_resources: Vec<PodResources>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodResources {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(message, repeated, tag = "3")]
    pub containers: Vec<ContainerResources>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerResources {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub devices: Vec<ContainerDevices>,
    #[prost(int64, repeated, tag = "3")]
    pub cpu_ids: Vec<i64>,
    #[prost(message, repeated, tag = "4")]
    pub memory: Vec<ContainerMemory>,
    #[prost(message, repeated, tag = "5")]
    pub dynamic_resources: Vec<DynamicResource>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerDevices {
    #[prost(string, tag = "1")]
    pub resource_name: String,
    #[prost(string, repeated, tag = "2")]
    pub device_ids: Vec<String>,
    #[prost(message, optional, tag = "3")]
    pub topology: Option<TopologyInfo>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TopologyInfo {
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<NumaNode>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NumaNode {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerMemory {
    #[prost(string, tag = "1")]
    pub memory_type: String,
    #[prost(uint64, tag = "2")]
    pub size: u64,
    #[prost(message, optional, tag = "3")]
    pub topology: Option<TopologyInfo>,
}

/// A DRA claim's devices (kubelet ≥ 1.27 with the feature gate). Not used for attribution
/// yet: DRA GPU drivers name devices by their own scheme, not by NVML UUID.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct DynamicResource {
    #[prost(string, tag = "1")]
    pub class_name: String,
    #[prost(string, tag = "2")]
    pub claim_name: String,
    #[prost(string, tag = "3")]
    pub claim_namespace: String,
    #[prost(message, repeated, tag = "4")]
    pub claim_resources: Vec<ClaimResource>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ClaimResource {
    #[prost(message, repeated, tag = "1")]
    pub cdi_devices: Vec<CdiDevice>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CdiDevice {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AllocatableResourcesRequest {}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AllocatableResourcesResponse {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<ContainerDevices>,
    #[prost(int64, repeated, tag = "2")]
    pub cpu_ids: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub memory: Vec<ContainerMemory>,
}
