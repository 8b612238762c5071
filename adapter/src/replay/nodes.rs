//! GPU nodes and pods over time: pods that do not fit on ready nodes wait for
//! cluster-autoscaler to add a node (the node lead time), then for their own start; nodes
//! left without pods for the scale-down delay go away; placeholder pods hold capacity until a
//! real pod preempts them. This is where GPU scale-up latency, the thing forecasts exist to
//! hide, comes from.
//!
//! Approximations (documented in docs/replay.md): pods are packed onto the fewest nodes
//! (the scheduler's bin-packing plus cluster-autoscaler's consolidation), a pod binds within
//! one simulation tick of a slot freeing, and preempting a placeholder is instant.

/// How nodes and pods behave.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeModel {
    /// Replicas that fit on one node (GPUs per node / GPUs per replica).
    pub replicas_per_node: u32,
    /// GPUs billed per node.
    pub gpus_per_node: u32,
    /// Seconds from cluster-autoscaler's decision to a schedulable node.
    pub lead_time: f64,
    /// Seconds from binding to a ready pod (image pull, model load).
    pub pod_start: f64,
    /// Seconds a node stays without real or placeholder pods before it is removed
    /// (cluster-autoscaler `--scale-down-unneeded-time`).
    pub scale_down_delay: f64,
}

#[derive(Debug, Clone)]
struct Node {
    ready_at: f64,
    unneeded_since: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Pod {
    /// When the pod got a slot on a ready node; `None` while pending.
    bound_at: Option<f64>,
}

/// Counts after one tick, for the report and the plot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub ready_replicas: u32,
    pub bound_replicas: u32,
    pub pending_replicas: u32,
    pub placeholders_running: u32,
    pub nodes: u32,
    pub ready_nodes: u32,
}

/// The cluster's state.
#[derive(Debug, Clone)]
pub struct Cluster {
    model: NodeModel,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    placeholders: u32,
    gpu_seconds: f64,
    nodes_added: u32,
    last: f64,
}

impl Cluster {
    /// A cluster already running `replicas` ready pods on just enough ready nodes (a replay
    /// starts in steady state, not from an empty cluster).
    pub fn new(model: NodeModel, replicas: u32, start: f64) -> Self {
        let per = model.replicas_per_node.max(1);
        let nodes = (0..replicas.div_ceil(per))
            .map(|_| Node {
                ready_at: f64::NEG_INFINITY,
                unneeded_since: None,
            })
            .collect();
        let pods = (0..replicas)
            .map(|_| Pod {
                bound_at: Some(f64::NEG_INFINITY),
            })
            .collect();
        Self {
            model,
            nodes,
            pods,
            placeholders: 0,
            gpu_seconds: 0.0,
            nodes_added: 0,
            last: start,
        }
    }

    /// GPU-seconds billed so far (a node bills from launch to removal).
    pub fn gpu_seconds(&self) -> f64 {
        self.gpu_seconds
    }

    /// Nodes cluster-autoscaler launched.
    pub fn nodes_added(&self) -> u32 {
        self.nodes_added
    }

    /// Advances to `now` with the Deployment at `replicas` and `placeholders` pause pods.
    pub fn step(&mut self, now: f64, replicas: u32, placeholders: u32) -> Snapshot {
        let dt = (now - self.last).max(0.0);
        self.gpu_seconds += dt * f64::from(self.model.gpus_per_node) * self.nodes.len() as f64;
        self.last = now;
        self.placeholders = placeholders;
        self.resize(replicas);

        let per = self.model.replicas_per_node.max(1);
        let ready_nodes = self.nodes.iter().filter(|n| n.ready_at <= now).count() as u32;
        let slots = ready_nodes * per;
        // Real pods first: they preempt placeholders (the placeholders' PriorityClass is lower).
        let mut bound = self.pods.iter().filter(|p| p.bound_at.is_some()).count() as u32;
        for pod in self.pods.iter_mut().filter(|p| p.bound_at.is_none()) {
            if bound >= slots {
                break;
            }
            pod.bound_at = Some(now);
            bound += 1;
        }
        let total = self.pods.len() as u32;
        let pending_real = total - bound;
        let placeholders_running = placeholders.min(slots - bound);
        let pending = pending_real + (placeholders - placeholders_running);

        // cluster-autoscaler scale-up: enough new nodes for every pending pod, counting the
        // nodes already on their way.
        let coming = self.nodes.iter().filter(|n| n.ready_at > now).count() as u32;
        if pending > coming * per {
            let add = (pending - coming * per).div_ceil(per);
            for _ in 0..add {
                self.nodes.push(Node {
                    ready_at: now + self.model.lead_time,
                    unneeded_since: None,
                });
            }
            self.nodes_added += add;
        }

        // Scale-down: with pods packed, the first ceil(occupied / per) ready nodes are used;
        // the rest are unneeded, and leave after the delay.
        let occupied = bound + placeholders_running;
        let used = occupied.div_ceil(per);
        let mut rank = 0u32;
        let delay = self.model.scale_down_delay;
        for node in &mut self.nodes {
            if node.ready_at > now {
                continue;
            }
            if rank < used {
                node.unneeded_since = None;
            } else if node.unneeded_since.is_none() {
                node.unneeded_since = Some(now);
            }
            rank += 1;
        }
        self.nodes
            .retain(|n| n.unneeded_since.is_none_or(|since| now - since < delay));

        let start = self.model.pod_start;
        let ready_replicas = self
            .pods
            .iter()
            .filter(|p| p.bound_at.is_some_and(|b| now - b >= start))
            .count() as u32;
        Snapshot {
            ready_replicas,
            bound_replicas: bound,
            pending_replicas: pending_real,
            placeholders_running,
            nodes: self.nodes.len() as u32,
            ready_nodes: self.nodes.iter().filter(|n| n.ready_at <= now).count() as u32,
        }
    }

    /// The ReplicaSet controller's deletion order (controller.ActivePods... ranking): pending
    /// pods first, then the most recently bound (not yet ready before ready).
    fn resize(&mut self, replicas: u32) {
        let want = replicas as usize;
        if self.pods.len() < want {
            self.pods.resize(want, Pod { bound_at: None });
            return;
        }
        if self.pods.len() > want {
            // Bound pods sorted oldest first, pending pods last; truncate drops the tail.
            self.pods.sort_by(|a, b| match (a.bound_at, b.bound_at) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            self.pods.truncate(want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> NodeModel {
        NodeModel {
            replicas_per_node: 2,
            gpus_per_node: 2,
            lead_time: 120.0,
            pod_start: 30.0,
            scale_down_delay: 600.0,
        }
    }

    /// A pod that fits on a ready node is ready after the pod start time only.
    #[test]
    fn free_slot_needs_only_pod_start() {
        let mut c = Cluster::new(model(), 1, 0.0);
        let s = c.step(0.0, 2, 0);
        assert_eq!((s.ready_replicas, s.bound_replicas, s.nodes), (1, 2, 1));
        assert_eq!(c.step(25.0, 2, 0).ready_replicas, 1);
        assert_eq!(c.step(30.0, 2, 0).ready_replicas, 2);
    }

    /// Issue 7: pods above current node capacity wait the node lead time, then start.
    #[test]
    fn pods_beyond_capacity_wait_lead_time_then_start() {
        let mut c = Cluster::new(model(), 2, 0.0);
        let s = c.step(0.0, 5, 0);
        assert_eq!(s.pending_replicas, 3);
        assert_eq!(s.nodes, 3); // 1 ready + ceil(3/2)=2 launched
        assert_eq!(c.nodes_added(), 2);
        assert_eq!(c.step(115.0, 5, 0).ready_replicas, 2);
        let s = c.step(120.0, 5, 0);
        assert_eq!((s.bound_replicas, s.ready_replicas), (5, 2));
        assert_eq!(c.step(150.0, 5, 0).ready_replicas, 5);
        // No extra nodes were launched while the first ones were on their way.
        assert_eq!(c.nodes_added(), 2);
    }

    /// cluster-autoscaler: a node without pods leaves after the scale-down delay, not before.
    #[test]
    fn idle_node_leaves_after_delay() {
        let mut c = Cluster::new(model(), 4, 0.0);
        assert_eq!(c.step(0.0, 2, 0).nodes, 2);
        assert_eq!(c.step(599.0, 2, 0).nodes, 2);
        assert_eq!(c.step(600.0, 2, 0).nodes, 1);
    }

    /// Demand that returns before the delay keeps the node (the timer resets).
    #[test]
    fn returning_pods_reset_the_timer() {
        let mut c = Cluster::new(model(), 4, 0.0);
        c.step(0.0, 2, 0);
        c.step(300.0, 4, 0);
        assert_eq!(c.step(700.0, 4, 0).nodes, 2);
    }

    /// Placeholders make cluster-autoscaler add nodes ahead; a real pod then preempts one
    /// and only waits for its own start.
    #[test]
    fn placeholders_prewarm_and_are_preempted() {
        let mut c = Cluster::new(model(), 2, 0.0);
        let s = c.step(0.0, 2, 2);
        assert_eq!((s.nodes, s.placeholders_running), (2, 0));
        let s = c.step(120.0, 2, 2);
        assert_eq!(s.placeholders_running, 2);
        let s = c.step(135.0, 4, 2);
        assert_eq!((s.bound_replicas, s.placeholders_running), (4, 0));
        assert_eq!(s.pending_replicas, 0);
        assert_eq!(c.step(165.0, 4, 2).ready_replicas, 4);
        // The displaced placeholders are pending again: another node is on its way.
        assert_eq!(c.nodes_added(), 2);
    }

    /// GPU-hours: every node bills its GPUs from launch to removal.
    #[test]
    fn billing_counts_provisioning_nodes() {
        let mut c = Cluster::new(model(), 2, 0.0);
        c.step(0.0, 4, 0); // one more node launched at 0
        c.step(3600.0, 4, 0);
        assert!((c.gpu_seconds() - 2.0 * 2.0 * 3600.0).abs() < 1e-6);
    }

    /// Scale-down removes pending pods before running ones (ReplicaSet deletion ranking).
    #[test]
    fn scale_down_drops_pending_first() {
        let mut c = Cluster::new(model(), 2, 0.0);
        c.step(0.0, 4, 0);
        let s = c.step(15.0, 2, 0);
        assert_eq!((s.ready_replicas, s.pending_replicas), (2, 0));
    }
}
