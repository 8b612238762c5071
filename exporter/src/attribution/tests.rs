//! Unit tests of the attribution join: whole GPUs, MIG, time-slicing with and without the
//! advertised replica count, processes mapped through cgroups.

use super::*;
use crate::pods::{ContainerMeta, PodMeta};
use crate::snapshot::{MigReading, ProcessReading};

const G0: &str = "GPU-00000000-0000-0000-0000-000000000000";
const G1: &str = "GPU-11111111-1111-1111-1111-111111111111";
const M0: &str = "MIG-22222222-2222-2222-2222-222222222222";

fn gpus() -> Vec<GpuReading> {
    vec![
        GpuReading {
            index: 0,
            uuid: G0.into(),
            model: "NVIDIA H100".into(),
            up: true,
            utilization_ratio: Some(0.9),
            memory_used_bytes: Some(1000),
            memory_total_bytes: Some(80_000),
            processes: Some(vec![
                ProcessReading {
                    pid: 10,
                    used_memory_bytes: Some(300),
                    sm_utilization_ratio: Some(0.6),
                },
                ProcessReading {
                    pid: 11,
                    used_memory_bytes: Some(200),
                    sm_utilization_ratio: Some(0.2),
                },
                ProcessReading {
                    pid: 12,
                    used_memory_bytes: Some(100),
                    sm_utilization_ratio: Some(0.1),
                },
            ]),
            ..GpuReading::default()
        },
        GpuReading {
            index: 1,
            uuid: G1.into(),
            model: "NVIDIA A100".into(),
            up: true,
            mig_enabled: Some(true),
            memory_total_bytes: Some(80_000),
            mig_instances: vec![MigReading {
                index: 0,
                uuid: M0.into(),
                profile: "1g.10gb".into(),
                memory_used_bytes: Some(42),
                memory_total_bytes: Some(10_000),
            }],
            ..GpuReading::default()
        },
    ]
}

fn alloc(ns: &str, pod: &str, containers: &[(&str, &str, &[&str])]) -> proto::PodResources {
    proto::PodResources {
        name: pod.into(),
        namespace: ns.into(),
        containers: containers
            .iter()
            .map(|(name, resource, ids)| proto::ContainerResources {
                name: (*name).into(),
                devices: vec![proto::ContainerDevices {
                    resource_name: (*resource).into(),
                    device_ids: ids.iter().map(|s| s.to_string()).collect(),
                    topology: None,
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn pod(uid: &str, ns: &str, name: &str, containers: &[(&str, &str)]) -> PodMeta {
    PodMeta {
        uid: uid.into(),
        namespace: ns.into(),
        name: name.into(),
        workload: format!("{name}-deploy"),
        workload_kind: "Deployment".into(),
        containers: containers
            .iter()
            .map(|(n, id)| ContainerMeta {
                name: (*n).into(),
                image: String::new(),
                id: Some((*id).into()),
            })
            .collect(),
        ..PodMeta::default()
    }
}

fn owner(uid: &str, id: &str) -> Option<CgroupOwner> {
    Some(CgroupOwner {
        pod_uid: uid.into(),
        container_id: Some(id.into()),
    })
}

fn find<'a>(out: &'a [PodGpuReading], pod: &str, container: &str) -> &'a PodGpuReading {
    out.iter()
        .find(|r| r.pod == pod && r.container == container)
        .unwrap_or_else(|| panic!("no reading for {pod}/{container} in {out:#?}"))
}

#[test]
fn whole_gpu_held_by_one_container_gets_the_gpu_readings() {
    let list = proto::ListPodResourcesResponse {
        pod_resources: vec![alloc("ml", "a", &[("main", "nvidia.com/gpu", &[G0])])],
    };
    let out = attribute(&gpus(), &list, None, None, &HashMap::new());
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.sharing, Sharing::Exclusive);
    assert_eq!(r.allocated, Some(1.0));
    assert_eq!(r.utilization_ratio, Some(0.9));
    assert_eq!(r.memory_used_bytes, Some(1000));
    // No API: names from the kubelet, workload empty.
    assert_eq!((r.namespace.as_str(), r.workload.as_str()), ("ml", ""));
}

#[test]
fn mig_instance_share_is_its_memory_fraction() {
    let list = proto::ListPodResourcesResponse {
        pod_resources: vec![alloc(
            "ml",
            "m",
            &[("main", "nvidia.com/mig-1g.10gb", &[M0])],
        )],
    };
    let out = attribute(&gpus(), &list, None, None, &HashMap::new());
    let r = &out[0];
    assert_eq!(r.sharing, Sharing::Mig);
    assert_eq!(r.allocated, Some(0.125));
    assert_eq!(r.mig, Some((M0.to_string(), "1g.10gb".to_string())));
    assert_eq!(r.utilization_ratio, None);
    assert_eq!(r.memory_used_bytes, Some(42));
    assert_eq!(r.uuid, G1);
}

#[test]
fn time_sliced_replicas_split_by_processes() {
    let r0 = format!("{G0}::0");
    let r1 = format!("{G0}::1");
    let r2 = format!("{G0}::2");
    let list = proto::ListPodResourcesResponse {
        pod_resources: vec![
            alloc(
                "ml",
                "a",
                &[("main", "nvidia.com/gpu", &[r0.as_str(), r1.as_str()])],
            ),
            alloc("ml", "b", &[("main", "nvidia.com/gpu", &[r2.as_str()])]),
        ],
    };
    let allocatable = proto::AllocatableResourcesResponse {
        devices: vec![proto::ContainerDevices {
            resource_name: "nvidia.com/gpu".into(),
            device_ids: (0..4).map(|i| format!("{G0}::{i}")).collect(),
            topology: None,
        }],
        ..Default::default()
    };
    let replicas = replica_counts(&allocatable);
    let index = PodIndex::from_pods([
        pod("uid-a", "ml", "a", &[("main", "aaaa")]),
        pod("uid-b", "ml", "b", &[("main", "bbbb")]),
    ]);
    let owners: HashMap<u32, Option<CgroupOwner>> = [
        (10, owner("uid-a", "aaaa")),
        (11, owner("uid-b", "bbbb")),
        (12, owner("uid-b", "bbbb")),
    ]
    .into();
    let out = attribute(&gpus(), &list, Some(&replicas), Some(&index), &owners);
    let a = find(&out, "a", "main");
    let b = find(&out, "b", "main");
    assert_eq!(a.sharing, Sharing::TimeSlicing);
    assert_eq!(a.allocated, Some(0.5));
    assert_eq!(b.allocated, Some(0.25));
    assert_eq!(a.utilization_ratio, Some(0.6));
    assert!((b.utilization_ratio.unwrap_or_default() - 0.3).abs() < 1e-9);
    assert_eq!(a.memory_used_bytes, Some(300));
    assert_eq!(b.memory_used_bytes, Some(300));
    assert_eq!(a.workload, "a-deploy");
    assert_eq!(a.workload_kind, "Deployment");

    // Without the advertised count, each replica counts as one.
    let out = attribute(&gpus(), &list, None, Some(&index), &owners);
    assert_eq!(find(&out, "a", "main").allocated, Some(2.0));
}

#[test]
fn shared_gpu_without_the_api_has_no_usage_series() {
    let r0 = format!("{G0}::0");
    let r1 = format!("{G0}::1");
    let list = proto::ListPodResourcesResponse {
        pod_resources: vec![
            alloc("ml", "a", &[("main", "nvidia.com/gpu", &[r0.as_str()])]),
            alloc("ml", "b", &[("main", "nvidia.com/gpu", &[r1.as_str()])]),
        ],
    };
    let out = attribute(&gpus(), &list, None, None, &HashMap::new());
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|r| r.utilization_ratio.is_none()));
    assert!(out.iter().all(|r| r.memory_used_bytes.is_none()));
}

#[test]
fn pods_gone_from_the_api_and_foreign_devices_are_skipped() {
    let list = proto::ListPodResourcesResponse {
        pod_resources: vec![
            alloc("ml", "gone", &[("main", "nvidia.com/gpu", &[G0])]),
            alloc("ml", "nic", &[("main", "example.com/nic", &[G0])]),
            alloc(
                "ml",
                "other",
                &[("main", "nvidia.com/gpu", &["GPU-unknown"])],
            ),
        ],
    };
    let index = PodIndex::from_pods([pod("u", "ml", "nic", &[]), pod("o", "ml", "other", &[])]);
    let out = attribute(&gpus(), &list, None, Some(&index), &HashMap::new());
    assert!(out.is_empty(), "{out:#?}");
}
