//! The pods on this node, from a list + watch of the Kubernetes API with the field selector
//! `spec.nodeName=<node>`: UID, IP, annotations, container ids and the workload that owns
//! each pod (ReplicaSet → Deployment, Job → CronJob, StatefulSet, DaemonSet), so an HPA
//! selector can pick one Deployment's series without kube-state-metrics.
//!
//! The watch runs on the tokio runtime and publishes an immutable [`PodIndex`] after every
//! change; the collection cycle only loads the latest one, so it never waits on the API.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::kube::api::{Api, ListParams, WatchEvent, WatchParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use crate::attribution::cgroup::strip_runtime;

/// Errors setting up the Kubernetes client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: ::kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes API configuration ({0}); run in a pod with a ServiceAccount token, pass \
         --kubeconfig, or --kube-api off"
    )]
    Infer(String),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(::kube::Error),
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
    /// Runtime container id without the `containerd://` prefix, once running.
    pub id: Option<String>,
}

/// What the exporter needs to know about one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ip: Option<String>,
    pub phase: String,
    pub annotations: BTreeMap<String, String>,
    pub containers: Vec<ContainerMeta>,
    /// The top-level owner: a Deployment's name for a ReplicaSet's pod, the pod's own name
    /// for a bare pod.
    pub workload: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`, `Pod`, or a
    /// custom controller's kind.
    pub workload_kind: String,
}

/// The pods on this node at one moment.
#[derive(Debug, Default)]
pub struct PodIndex {
    by_uid: HashMap<String, Arc<PodMeta>>,
    by_name: HashMap<(String, String), String>,
}

impl PodIndex {
    pub fn from_pods(pods: impl IntoIterator<Item = PodMeta>) -> Self {
        let mut index = Self::default();
        for pod in pods {
            index.insert(Arc::new(pod));
        }
        index
    }

    fn insert(&mut self, pod: Arc<PodMeta>) {
        self.by_name
            .insert((pod.namespace.clone(), pod.name.clone()), pod.uid.clone());
        self.by_uid.insert(pod.uid.clone(), pod);
    }

    fn remove(&mut self, uid: &str) {
        if let Some(pod) = self.by_uid.remove(uid) {
            let key = (pod.namespace.clone(), pod.name.clone());
            if self.by_name.get(&key).map(String::as_str) == Some(uid) {
                self.by_name.remove(&key);
            }
        }
    }

    pub fn by_uid(&self, uid: &str) -> Option<&Arc<PodMeta>> {
        self.by_uid.get(uid)
    }

    pub fn by_name(&self, namespace: &str, name: &str) -> Option<&Arc<PodMeta>> {
        self.by_name
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(|uid| self.by_uid.get(uid))
    }

    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodMeta>> {
        self.by_uid.values()
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// The latest pod index and whether the watch is healthy; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PodSource {
    index: Arc<ArcSwap<PodIndex>>,
    up: Arc<AtomicBool>,
    /// Set by the first successful list; stays set.
    synced: Arc<AtomicBool>,
    enabled: bool,
}

impl PodSource {
    /// A source that never has pods (`--kube-api off`, or no API configuration).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A fixed index, for tests and benchmarks.
    pub fn fixed(index: PodIndex) -> Self {
        Self {
            index: Arc::new(ArcSwap::from_pointee(index)),
            up: Arc::new(AtomicBool::new(true)),
            synced: Arc::new(AtomicBool::new(true)),
            enabled: true,
        }
    }

    /// The latest index when the API has been listed successfully and the watch is live;
    /// `None` otherwise, so attribution falls back to the kubelet's names.
    pub fn current(&self) -> Option<Arc<PodIndex>> {
        self.is_up().then(|| self.index.load_full())
    }

    pub fn is_up(&self) -> bool {
        self.enabled && self.up.load(Ordering::Acquire)
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// True once the first list succeeded (or the API is off): until then, pod series would
    /// appear with an empty `workload` and change labels a moment later.
    pub fn has_synced(&self) -> bool {
        !self.enabled || self.synced.load(Ordering::Acquire)
    }
}

/// Builds a client from `kubeconfig`, or the in-cluster / `KUBECONFIG` configuration.
pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<::kube::Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            ::kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        None => ::kube::Config::infer()
            .await
            .map_err(|e| Error::Infer(e.to_string()))?,
    };
    ::kube::Client::try_from(config).map_err(Error::Client)
}

/// Starts the list + watch of the pods on `node`; the returned source fills in once the
/// first list succeeds.
pub fn start(client: ::kube::Client, node: String) -> PodSource {
    let source = PodSource {
        index: Arc::new(ArcSwap::from_pointee(PodIndex::default())),
        up: Arc::new(AtomicBool::new(false)),
        synced: Arc::new(AtomicBool::new(false)),
        enabled: true,
    };
    let publish = source.clone();
    tokio::spawn(async move { watch_loop(client, node, publish).await });
    source
}

async fn watch_loop(client: ::kube::Client, node: String, source: PodSource) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut owners = OwnerResolver::new(client);
    let selector = format!("spec.nodeName={node}");
    let mut backoff = Duration::from_millis(500);
    let mut logged_once = false;
    loop {
        match list_then_watch(&pods, &selector, &mut owners, &source).await {
            Ok(()) => {
                // The watch ended normally (server timeout): relist at once.
                backoff = Duration::from_millis(500);
                continue;
            }
            Err(err) => {
                // Logged when the watch goes down, not on every retry while it stays down.
                let was_up = source.up.swap(false, Ordering::AcqRel);
                if was_up || !logged_once {
                    tracing::warn!(
                        error = %err,
                        "Kubernetes pod watch failed; pod series keep kubelet names with an \
                         empty workload, engine scraping pauses, gpuscale_exporter_kube_api_up 0; retrying"
                    );
                    logged_once = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One list, then a watch from its resourceVersion until the stream ends or fails.
async fn list_then_watch(
    pods: &Api<Pod>,
    selector: &str,
    owners: &mut OwnerResolver,
    source: &PodSource,
) -> Result<(), ::kube::Error> {
    let list = pods.list(&ListParams::default().fields(selector)).await?;
    let mut index = PodIndex::default();
    for pod in &list.items {
        if let Some(meta) = owners.describe(pod).await {
            index.insert(Arc::new(meta));
        }
    }
    let was_up = source.up.load(Ordering::Acquire);
    source.index.store(Arc::new(clone_index(&index)));
    source.up.store(true, Ordering::Release);
    source.synced.store(true, Ordering::Release);
    if !was_up {
        tracing::info!(pods = index.len(), "Kubernetes pod watch synced");
    }
    let mut version = list.metadata.resource_version.unwrap_or_default();
    let params = WatchParams::default().fields(selector).timeout(290);
    let mut stream = Box::pin(pods.watch(&params, &version).await?);
    while let Some(event) = stream.next().await {
        match event? {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                version = pod.metadata.resource_version.clone().unwrap_or(version);
                if let Some(meta) = owners.describe(&pod).await {
                    index.remove(&meta.uid);
                    index.insert(Arc::new(meta));
                }
            }
            WatchEvent::Deleted(pod) => {
                version = pod.metadata.resource_version.clone().unwrap_or(version);
                if let Some(uid) = &pod.metadata.uid {
                    index.remove(uid);
                }
            }
            WatchEvent::Bookmark(mark) => {
                version = mark.metadata.resource_version;
                continue;
            }
            // 410 Gone and friends: relist.
            WatchEvent::Error(status) => {
                tracing::debug!(message = %status.message, "pod watch error; relisting");
                return Ok(());
            }
        }
        source.index.store(Arc::new(clone_index(&index)));
    }
    let _ = version;
    Ok(())
}

fn clone_index(index: &PodIndex) -> PodIndex {
    PodIndex {
        by_uid: index.by_uid.clone(),
        by_name: index.by_name.clone(),
    }
}

/// Resolves controller owners to workloads, caching what the API answered.
struct OwnerResolver {
    client: ::kube::Client,
    cache: HashMap<(String, &'static str, String), (String, String)>,
    logged: bool,
}

impl OwnerResolver {
    fn new(client: ::kube::Client) -> Self {
        Self {
            client,
            cache: HashMap::new(),
            logged: false,
        }
    }

    /// The pod's facts; `None` for a pod without UID (never from a real API server).
    async fn describe(&mut self, pod: &Pod) -> Option<PodMeta> {
        let mut meta = pod_meta(pod)?;
        let (kind, name) = self.workload_of(pod).await;
        meta.workload_kind = kind;
        meta.workload = name;
        Some(meta)
    }

    async fn workload_of(&mut self, pod: &Pod) -> (String, String) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let Some(owner) = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|refs| refs.iter().find(|o| o.controller == Some(true)))
        else {
            return ("Pod".into(), pod_name);
        };
        match owner.kind.as_str() {
            "ReplicaSet" => {
                let hash = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("pod-template-hash"));
                self.resolve(&namespace, "ReplicaSet", &owner.name, hash)
                    .await
            }
            "Job" => self.resolve(&namespace, "Job", &owner.name, None).await,
            // A static pod's mirror is "owned" by its Node: it is its own workload.
            "Node" => ("Pod".into(), pod_name),
            kind => (kind.to_string(), owner.name.clone()),
        }
    }

    /// Looks up the owner's own controller (ReplicaSet → Deployment, Job → CronJob). When
    /// the API refuses, a ReplicaSet named `<deployment>-<pod-template-hash>` still yields
    /// its Deployment, which only the Deployment controller names that way.
    async fn resolve(
        &mut self,
        namespace: &str,
        kind: &'static str,
        name: &str,
        template_hash: Option<&String>,
    ) -> (String, String) {
        let key = (namespace.to_string(), kind, name.to_string());
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let owners = match kind {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
                .get(name)
                .await
                .map(|rs| rs.metadata.owner_references),
            _ => Api::<Job>::namespaced(self.client.clone(), namespace)
                .get(name)
                .await
                .map(|job| job.metadata.owner_references),
        };
        let resolved = match owners {
            Ok(refs) => {
                let top = refs
                    .unwrap_or_default()
                    .into_iter()
                    .find(|o| o.controller == Some(true));
                match top {
                    Some(o) => (o.kind, o.name),
                    None => (kind.to_string(), name.to_string()),
                }
            }
            Err(err) => {
                if !self.logged {
                    tracing::warn!(error = %err, kind, "cannot read a pod's owner; check the exporter's RBAC (get replicasets, jobs)");
                    self.logged = true;
                }
                let by_hash = template_hash
                    .and_then(|h| name.strip_suffix(h.as_str()))
                    .and_then(|p| p.strip_suffix('-'))
                    .filter(|p| !p.is_empty());
                // Not cached: the API may answer next time.
                return match by_hash {
                    Some(deployment) => ("Deployment".into(), deployment.to_string()),
                    None => (kind.to_string(), name.to_string()),
                };
            }
        };
        self.cache.insert(key, resolved.clone());
        resolved
    }
}

/// The fields of a pod the exporter uses; the workload is filled in by the caller.
pub fn pod_meta(pod: &Pod) -> Option<PodMeta> {
    let uid = pod.metadata.uid.clone()?;
    let status = pod.status.as_ref();
    let ids: HashMap<&str, &str> = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|statuses| {
            statuses
                .iter()
                .filter_map(|c| Some((c.name.as_str(), strip_runtime(c.container_id.as_deref()?))))
                .collect()
        })
        .unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|spec| {
            spec.containers
                .iter()
                .map(|c| ContainerMeta {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    id: ids.get(c.name.as_str()).map(|id| id.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(PodMeta {
        uid,
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        ip: status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty()),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        containers,
        workload: String::new(),
        workload_kind: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_meta_reads_ids_ip_and_annotations() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "annotations": {"gpuscale.io/engine": "vllm"}},
            "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.6.3"},
                                    {"name": "sidecar", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7",
                       "containerStatuses": [{"name": "server", "containerID": "containerd://abc",
                         "image": "", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .expect("valid pod");
        let meta = pod_meta(&pod).expect("has uid");
        assert_eq!(meta.ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(meta.containers[0].id.as_deref(), Some("abc"));
        assert_eq!(meta.containers[1].id, None);
        assert_eq!(meta.annotations["gpuscale.io/engine"], "vllm");
    }

    #[test]
    fn index_tracks_renames_and_removals() {
        let mut index = PodIndex::from_pods([PodMeta {
            uid: "u1".into(),
            namespace: "ns".into(),
            name: "a".into(),
            ..PodMeta::default()
        }]);
        assert!(index.by_name("ns", "a").is_some());
        index.remove("u1");
        assert!(index.by_name("ns", "a").is_none());
        assert!(index.is_empty());
    }
}
