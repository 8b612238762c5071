//! Which container uses which GPU, and how much of it: the kubelet's device allocations
//! (pod-resources `List`) matched to NVML's GPUs and MIG instances, with per-process NVML
//! samples mapped to containers through their cgroups when several containers share a GPU.
//!
//! [`attribute`] is a pure function of one cycle's inputs, so every sharing case is tested
//! without a kubelet; [`Attributor`] gathers those inputs once per collection cycle.

pub mod cgroup;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::kubelet::{PodResourcesClient, proto};
use crate::pods::{PodIndex, PodSource};
use crate::snapshot::{GpuReading, PodGpuReading, Sharing};

use cgroup::CgroupOwner;

/// Device resources of these vendors are matched against NVML devices.
const GPU_RESOURCE_PREFIX: &str = "nvidia.com/";

/// Where a device id points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Target {
    gpu: usize,
    mig: Option<usize>,
}

/// Splits a time-slicing replica id `<uuid>::<n>` into its device id.
fn base_id(device_id: &str) -> (&str, bool) {
    match device_id.split_once("::") {
        Some((base, _)) => (base, true),
        None => (device_id, false),
    }
}

fn device_targets(gpus: &[GpuReading]) -> HashMap<&str, Target> {
    let mut map = HashMap::new();
    for (g, gpu) in gpus.iter().enumerate() {
        if !gpu.uuid.is_empty() {
            map.insert(gpu.uuid.as_str(), Target { gpu: g, mig: None });
        }
        for (m, mig) in gpu.mig_instances.iter().enumerate() {
            map.insert(
                mig.uuid.as_str(),
                Target {
                    gpu: g,
                    mig: Some(m),
                },
            );
        }
    }
    map
}

/// Replicas each device id is advertised as (`<uuid>::0..N`), from `GetAllocatableResources`.
pub fn replica_counts(allocatable: &proto::AllocatableResourcesResponse) -> HashMap<String, u32> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    for devices in &allocatable.devices {
        if !devices.resource_name.starts_with(GPU_RESOURCE_PREFIX) {
            continue;
        }
        for id in &devices.device_ids {
            let (base, replica) = base_id(id);
            if replica {
                *counts.entry(base.to_string()).or_default() += 1;
            }
        }
    }
    counts
}

#[derive(Debug, Default)]
struct Holding {
    replicas: u32,
    shared: bool,
}

/// Container key: (namespace, pod, container).
type ContainerKey = (String, String, String);

/// Joins one cycle's inputs into per-container GPU readings.
///
/// - `list`: the kubelet's allocations; pods unknown to a live `pods` index are skipped (the
///   kubelet reports pods for a while after the API deleted them).
/// - `replicas`: advertised replicas per device id; `None` when unavailable, and then each
///   replica counts as one whole GPU share.
/// - `owners`: cgroup owner of each NVML process id (only needed for shared GPUs).
pub fn attribute(
    gpus: &[GpuReading],
    list: &proto::ListPodResourcesResponse,
    replicas: Option<&HashMap<String, u32>>,
    pods: Option<&PodIndex>,
    owners: &HashMap<u32, Option<CgroupOwner>>,
) -> Vec<PodGpuReading> {
    let targets = device_targets(gpus);
    let mut held: BTreeMap<(Target, ContainerKey), Holding> = BTreeMap::new();
    for pod in &list.pod_resources {
        if let Some(index) = pods {
            if index.by_name(&pod.namespace, &pod.name).is_none() {
                continue;
            }
        }
        for container in &pod.containers {
            for devices in &container.devices {
                if !devices.resource_name.starts_with(GPU_RESOURCE_PREFIX) {
                    continue;
                }
                for id in &devices.device_ids {
                    let (base, replica) = base_id(id);
                    let Some(target) = targets.get(base) else {
                        continue;
                    };
                    let key = (
                        pod.namespace.clone(),
                        pod.name.clone(),
                        container.name.clone(),
                    );
                    let holding = held.entry((*target, key)).or_default();
                    holding.replicas += 1;
                    holding.shared |= replica;
                }
            }
        }
    }

    // Holders per physical GPU (not MIG instances): one holder gets the GPU's own readings.
    let mut holders: HashMap<usize, Vec<&ContainerKey>> = HashMap::new();
    for (target, key) in held.keys() {
        if target.mig.is_none() {
            holders.entry(target.gpu).or_default().push(key);
        }
    }
    let usage = shared_usage(gpus, &holders, pods, owners);

    let mut out = Vec::with_capacity(held.len());
    for ((target, key), holding) in &held {
        let gpu = &gpus[target.gpu];
        let (namespace, pod, container) = key;
        let (workload, workload_kind) = pods
            .and_then(|index| index.by_name(namespace, pod))
            .map(|meta| (meta.workload.clone(), meta.workload_kind.clone()))
            .unwrap_or_default();
        let mut reading = PodGpuReading {
            namespace: namespace.clone(),
            pod: pod.clone(),
            container: container.clone(),
            workload,
            workload_kind,
            gpu: gpu.index,
            uuid: gpu.uuid.clone(),
            model: gpu.model.clone(),
            mig: None,
            sharing: Sharing::Exclusive,
            allocated: Some(1.0),
            utilization_ratio: None,
            memory_used_bytes: None,
        };
        if let Some(m) = target.mig {
            let mig = &gpu.mig_instances[m];
            reading.mig = Some((mig.uuid.clone(), mig.profile.clone()));
            reading.sharing = Sharing::Mig;
            reading.allocated = match (mig.memory_total_bytes, gpu.memory_total_bytes) {
                (Some(part), Some(whole)) if whole > 0 => Some(part as f64 / whole as f64),
                _ => None,
            };
            // NVML has no utilization per MIG instance; memory is the instance's own.
            reading.memory_used_bytes = mig.memory_used_bytes;
        } else {
            if holding.shared {
                reading.sharing = Sharing::TimeSlicing;
                let advertised = replicas.and_then(|r| r.get(&gpu.uuid)).copied();
                reading.allocated = Some(match advertised {
                    Some(n) if n > 0 => f64::from(holding.replicas) / f64::from(n),
                    _ => f64::from(holding.replicas),
                });
            }
            let sole = holders.get(&target.gpu).is_some_and(|h| h.len() == 1);
            if sole {
                reading.utilization_ratio = gpu.utilization_ratio;
                reading.memory_used_bytes = gpu.memory_used_bytes;
            } else if let Some(per) = usage.get(&target.gpu) {
                let (util, memory) = per.get(key).copied().unwrap_or_default();
                reading.utilization_ratio = per.utilization_known.then_some(util.min(1.0));
                reading.memory_used_bytes = per.memory_known.then_some(memory);
            }
        }
        out.push(reading);
    }
    out
}

#[derive(Debug, Default)]
struct GpuUsage {
    by_container: HashMap<ContainerKey, (f64, u64)>,
    utilization_known: bool,
    memory_known: bool,
}

impl GpuUsage {
    fn get(&self, key: &ContainerKey) -> Option<&(f64, u64)> {
        self.by_container.get(key)
    }
}

/// Sums process samples per holding container on each shared GPU. Needs the pod index (to
/// turn a cgroup's pod UID into a name); without it shared GPUs get no usage series.
fn shared_usage(
    gpus: &[GpuReading],
    holders: &HashMap<usize, Vec<&ContainerKey>>,
    pods: Option<&PodIndex>,
    owners: &HashMap<u32, Option<CgroupOwner>>,
) -> HashMap<usize, GpuUsage> {
    let mut out = HashMap::new();
    let Some(index) = pods else {
        return out;
    };
    for (&g, keys) in holders {
        if keys.len() < 2 {
            continue;
        }
        let Some(processes) = &gpus[g].processes else {
            continue;
        };
        let mut usage = GpuUsage {
            utilization_known: processes.iter().all(|p| p.sm_utilization_ratio.is_some()),
            memory_known: processes.iter().all(|p| p.used_memory_bytes.is_some()),
            ..GpuUsage::default()
        };
        for key in keys {
            usage.by_container.insert((*key).clone(), (0.0, 0));
        }
        for process in processes {
            let Some(Some(owner)) = owners.get(&process.pid) else {
                continue;
            };
            let Some(pod) = index.by_uid(&owner.pod_uid) else {
                continue;
            };
            let by_id = owner.container_id.as_ref().and_then(|id| {
                pod.containers
                    .iter()
                    .find(|c| c.id.as_deref() == Some(id.as_str()))
                    .map(|c| c.name.clone())
            });
            // A restarted container's new id may not be in the index yet: when the pod holds
            // this GPU through one container only, that container it is.
            let container = by_id.or_else(|| {
                let mut mine = keys
                    .iter()
                    .filter(|(ns, name, _)| *ns == pod.namespace && *name == pod.name);
                match (mine.next(), mine.next()) {
                    (Some((_, _, c)), None) => Some(c.clone()),
                    _ => None,
                }
            });
            let Some(container) = container else {
                continue;
            };
            let key = (pod.namespace.clone(), pod.name.clone(), container);
            if let Some(entry) = usage.by_container.get_mut(&key) {
                entry.0 += process.sm_utilization_ratio.unwrap_or(0.0);
                entry.1 += process.used_memory_bytes.unwrap_or(0);
            }
        }
        out.insert(g, usage);
    }
    out
}

/// Gathers attribution inputs once per collection cycle, from the collection thread.
pub struct Attributor {
    client: Option<PodResourcesClient>,
    runtime: tokio::runtime::Handle,
    proc_root: PathBuf,
    pods: PodSource,
    logged_kubelet: Option<String>,
    logged_allocatable: bool,
    started: std::time::Instant,
}

/// How long pod series wait for the first pod list before going out with an empty
/// `workload` (the API may be slow or refuse).
const FIRST_SYNC_GRACE: Duration = Duration::from_secs(10);

/// What one cycle's attribution produced.
#[derive(Debug, Default)]
pub struct AttributionReading {
    pub pods: Vec<PodGpuReading>,
    /// `None` when pod-resources is turned off.
    pub kubelet_up: Option<bool>,
}

impl Attributor {
    /// `socket`: `None` turns pod-resources off (no pod series, no `kubelet_up`).
    pub fn new(
        socket: Option<PathBuf>,
        timeout: Duration,
        proc_root: PathBuf,
        runtime: tokio::runtime::Handle,
        pods: PodSource,
    ) -> Self {
        Self {
            client: socket.map(|s| PodResourcesClient::new(s, timeout)),
            runtime,
            proc_root,
            pods,
            logged_kubelet: None,
            logged_allocatable: false,
            started: std::time::Instant::now(),
        }
    }

    pub fn pods(&self) -> &PodSource {
        &self.pods
    }

    /// One cycle: ask the kubelet, read cgroups of processes on shared GPUs, join.
    pub fn collect(&mut self, gpus: &[GpuReading]) -> AttributionReading {
        let Some(client) = self.client.as_mut() else {
            return AttributionReading::default();
        };
        let (list, allocatable) = self.runtime.block_on(async {
            let list = client.list().await;
            // Replica counts matter only when some device is a replica.
            let wants_allocatable = list.as_ref().is_ok_and(|l| {
                l.pod_resources.iter().any(|p| {
                    p.containers.iter().any(|c| {
                        c.devices
                            .iter()
                            .any(|d| d.device_ids.iter().any(|id| id.contains("::")))
                    })
                })
            });
            let allocatable = if wants_allocatable {
                Some(client.allocatable().await)
            } else {
                None
            };
            (list, allocatable)
        });
        let list = match list {
            Ok(list) => {
                if self.logged_kubelet.take().is_some() {
                    tracing::info!("kubelet pod-resources answering again");
                }
                list
            }
            Err(err) => {
                let text = err.to_string();
                if self.logged_kubelet.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "kubelet pod-resources unavailable; no pod GPU series, gpuscale_exporter_kubelet_up 0");
                    self.logged_kubelet = Some(text);
                }
                return AttributionReading {
                    pods: Vec::new(),
                    kubelet_up: Some(false),
                };
            }
        };
        let replicas = match allocatable {
            Some(Ok(response)) => Some(replica_counts(&response)),
            Some(Err(err)) => {
                if !self.logged_allocatable {
                    tracing::warn!(error = %err, "kubelet GetAllocatableResources unavailable; each time-slicing replica counts as a whole GPU in gpu_pod_gpus_allocated");
                    self.logged_allocatable = true;
                }
                None
            }
            None => None,
        };
        if !self.pods.has_synced() && self.started.elapsed() < FIRST_SYNC_GRACE {
            return AttributionReading {
                pods: Vec::new(),
                kubelet_up: Some(true),
            };
        }
        let index = self.pods.current();
        let owners = self.process_owners(gpus, &list, index.as_deref());
        AttributionReading {
            pods: attribute(gpus, &list, replicas.as_ref(), index.as_deref(), &owners),
            kubelet_up: Some(true),
        }
    }

    /// Reads the cgroup of every process on a GPU that more than one container holds.
    fn process_owners(
        &self,
        gpus: &[GpuReading],
        list: &proto::ListPodResourcesResponse,
        index: Option<&PodIndex>,
    ) -> HashMap<u32, Option<CgroupOwner>> {
        let mut owners = HashMap::new();
        if index.is_none() {
            return owners;
        }
        let mut holders: HashMap<&str, u32> = HashMap::new();
        for pod in &list.pod_resources {
            for container in &pod.containers {
                let mut mine: Vec<&str> = container
                    .devices
                    .iter()
                    .filter(|d| d.resource_name.starts_with(GPU_RESOURCE_PREFIX))
                    .flat_map(|d| d.device_ids.iter().map(|id| base_id(id).0))
                    .collect();
                mine.sort_unstable();
                mine.dedup();
                for id in mine {
                    *holders.entry(id).or_default() += 1;
                }
            }
        }
        for gpu in gpus {
            if holders.get(gpu.uuid.as_str()).copied().unwrap_or(0) < 2 {
                continue;
            }
            for process in gpu.processes.iter().flatten() {
                owners
                    .entry(process.pid)
                    .or_insert_with(|| cgroup::read_owner(&self.proc_root, process.pid));
            }
        }
        owners
    }
}

#[cfg(test)]
mod tests;
