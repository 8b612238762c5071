//! Maps a process to its pod and container from `/proc/<pid>/cgroup`, which is the only
//! link between an NVML process id and Kubernetes: the kubelet names each pod's cgroup after
//! the pod UID and the runtime names each container's cgroup after the container id.
//!
//! Handles cgroup v1 and v2, the cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`) and the
//! systemd driver (`kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`), for
//! containerd, CRI-O (`crio-<id>.scope`) and Docker (`docker-<id>.scope`).

use std::path::Path;

/// The pod and container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupOwner {
    /// Pod UID with dashes, as in `metadata.uid`.
    pub pod_uid: String,
    /// Container id without the runtime prefix, as in `containerStatuses[].containerID` after
    /// `containerd://`; `None` for a process in the pod's own cgroup.
    pub container_id: Option<String>,
}

/// Reads `<proc_root>/<pid>/cgroup`; `None` when the process is gone, unreadable, or not in
/// a pod.
pub fn read_owner(proc_root: &Path, pid: u32) -> Option<CgroupOwner> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    parse(&text)
}

/// The owner from the text of a `/proc/<pid>/cgroup` file. The v2 line (`0::`) wins when
/// it names a pod; otherwise the first v1 hierarchy that does.
pub fn parse(text: &str) -> Option<CgroupOwner> {
    let mut found = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(owner) = parse_path(path) {
            if id == "0" {
                return Some(owner);
            }
            found.get_or_insert(owner);
        }
    }
    found
}

fn parse_path(path: &str) -> Option<CgroupOwner> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (at, pod_uid) = segments
        .iter()
        .enumerate()
        .find_map(|(i, s)| pod_uid_of(s).map(|uid| (i, uid)))?;
    let container_id = segments.get(at + 1).and_then(|s| container_id_of(s));
    Some(CgroupOwner {
        pod_uid,
        container_id,
    })
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(segment: &str) -> Option<String> {
    let raw = if let Some(slice) = segment.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        uid
    } else {
        segment.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

fn is_uid(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `<id>`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`,
/// `cri-dockerd-<id>.scope`; not `crio-conmon-<id>.scope` (CRI-O's monitor process).
fn container_id_of(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    let id = ["cri-containerd-", "crio-", "docker-", "cri-dockerd-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    (id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The id part of a `containerStatuses[].containerID` (`containerd://<id>`, `cri-o://<id>`,
/// `docker://<id>`).
pub fn strip_runtime(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<CgroupOwner> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/attribution/testdata")
            .join(name);
        parse(&std::fs::read_to_string(path).expect("fixture exists"))
    }

    fn owner(uid: &str, id: &str) -> Option<CgroupOwner> {
        Some(CgroupOwner {
            pod_uid: uid.into(),
            container_id: Some(id.into()),
        })
    }

    #[test]
    fn containerd_systemd_cgroup_v2() {
        assert_eq!(
            fixture("containerd-systemd-v2.cgroup"),
            owner(
                "0f3e8a52-6b1d-4c1e-9a53-1c2d3e4f5a6b",
                "4e1c2b7d9a0f3e5c6b8a7d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"
            )
        );
    }

    #[test]
    fn containerd_cgroupfs_v1_and_v2() {
        assert_eq!(
            fixture("containerd-cgroupfs-v1.cgroup"),
            owner(
                "7c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b",
                "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"
            )
        );
        assert_eq!(
            fixture("containerd-cgroupfs-v2.cgroup"),
            owner(
                "6e7f8091-a2b3-c4d5-e6f7-08192a3b4c5d",
                "31415926535897932384626433832795028841971693993751058209749445923"
            )
        );
    }

    #[test]
    fn crio_systemd_v1_and_v2() {
        assert_eq!(
            fixture("crio-systemd-v2.cgroup"),
            owner(
                "5a6b7c8d-9e0f-1a2b-3c4d-5e6f7a8b9c0d",
                "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80"
            )
        );
        assert_eq!(
            fixture("crio-systemd-v1.cgroup"),
            owner(
                "2b3c4d5e-6f70-8192-a3b4-c5d6e7f8091a",
                "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899"
            )
        );
    }

    #[test]
    fn docker_systemd_and_cgroupfs() {
        assert_eq!(
            fixture("docker-systemd-v1.cgroup"),
            owner(
                "3c4d5e6f-7081-92a3-b4c5-d6e7f8091a2b",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )
        );
        // Guaranteed QoS: no QoS class level in the path.
        assert_eq!(
            fixture("docker-cgroupfs-v1.cgroup"),
            owner(
                "4d5e6f70-8192-a3b4-c5d6-e7f8091a2b3c",
                "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
            )
        );
    }

    #[test]
    fn non_pod_and_conmon_processes() {
        assert_eq!(fixture("not-a-pod.cgroup"), None);
        let conmon = fixture("crio-conmon.cgroup").expect("in a pod");
        assert_eq!(conmon.container_id, None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("0::/kubepods/podnot-a-uid/abc"), None);
    }

    #[test]
    fn runtime_prefix_is_stripped() {
        assert_eq!(strip_runtime("containerd://abc"), "abc");
        assert_eq!(strip_runtime("cri-o://abc"), "abc");
        assert_eq!(strip_runtime("abc"), "abc");
    }
}
