//! The simulated Kubernetes cluster: which series exist in a block, and how each one moves.
//!
//! Series are described, not materialised: a [`SeriesSpec`] names its labels (as interned
//! symbol ids) and a [`Kind`] from which `values.rs` derives every sample.

use std::collections::HashMap;

use super::profile::{Profile, Topology};
use super::values::hash;

/// How a series' values evolve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Monotonic with resets; `integer` counters grow by whole numbers (request counts).
    Counter {
        rate_per_s: f64,
        integer: bool,
    },
    /// Random walk around `mean`.
    Gauge {
        mean: f64,
        spread: f64,
        integer: bool,
    },
    Constant(f64),
    /// Classic histogram bucket: `fraction` of the group's request counter (cumulative `le`),
    /// so all buckets of a group stay consistent (monotonic in `le` and in time).
    Bucket {
        rate_per_s: f64,
        fraction: f64,
    },
    /// Histogram `_sum`: the group's requests times a mean latency.
    Sum {
        rate_per_s: f64,
        mean: f64,
    },
}

#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// (name, value) symbol ids, sorted by name.
    pub labels: Vec<(u32, u32)>,
    pub kind: Kind,
    /// Seed shared by the series that must move together (a histogram's buckets).
    pub group: u64,
    /// The scrape target: series of one target share their timestamps.
    pub target: u64,
}

/// Interns label strings; after [`Interner::sorted`] ids follow string order, so comparing
/// label id tuples compares label sets exactly as Prometheus orders them.
#[derive(Default)]
pub struct Interner {
    ids: HashMap<String, u32>,
    strings: Vec<String>,
}

impl Interner {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    /// Renumbers symbols in sorted order; returns the sorted symbols and the old→new map.
    pub fn sorted(self) -> (Vec<String>, Vec<u32>) {
        let mut order: Vec<u32> = (0..self.strings.len() as u32).collect();
        order.sort_by(|&a, &b| self.strings[a as usize].cmp(&self.strings[b as usize]));
        let mut remap = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let mut strings = self.strings;
        let mut sorted = Vec::with_capacity(strings.len());
        for &old in &order {
            sorted.push(std::mem::take(&mut strings[old as usize]));
        }
        (sorted, remap)
    }
}

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "zürich-payments",
    "checkout",
    "team-日本",
    "search",
    "ledger-ß",
    "ingress-nginx",
    "data",
];
const DEPLOYMENTS: &[&str] = &[
    "api",
    "web",
    "worker",
    "cache",
    "auth",
    "billing",
    "catalog",
    "cart",
    "gateway",
    "recommender",
    "mailer",
    "scheduler",
];
const HANDLERS: &[&str] = &[
    "/api/v1/users/{id}",
    "/",
    "/api/v1/orders",
    "/search?q=\"x\"",
    "/healthz",
    "/日本/商品",
    "/static/*",
    "C:\\legacy\\path",
    "/api/v2/items/{id}/reviews",
    "/metrics",
];
const METHODS: &[&str] = &["GET", "POST"];
const CODES: &[&str] = &["200", "404", "500"];
const LE: &[&str] = &[
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const CPU_MODES: &[&str] = &[
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const PHASES: &[&str] = &["Failed", "Pending", "Running", "Succeeded", "Unknown"];
const FILESYSTEMS: &[(&str, &str, &str)] = &[
    ("/dev/nvme0n1p1", "/", "ext4"),
    ("/dev/nvme1n1", "/var/lib/kubelet", "xfs"),
    ("tmpfs", "/mnt/data disk", "tmpfs"),
];
const DEVICES: &[&str] = &["eth0", "lo"];
const NODE_SERIES_FIXED: u64 = 3 + 2 * 2 + 3 + 1; // memory x2 + load1, network, filesystems, up
const POD_SERIES_FIXED: u64 = 4 + 1 + 5; // process/up, kube_pod_info, phases
const PER_CONTAINER: u64 = 3 + 1; // cadvisor x3, restarts
const PER_HANDLER: u64 = 2 * 3 + 2 * (12 + 2); // requests by method x code, histogram by method

fn nth_name(list: &[&str], i: u32, prefix: &str) -> String {
    match list.get(i as usize) {
        Some(s) => s.to_string(),
        None => format!("{prefix}-{i}"),
    }
}

/// Series per block implied by the topology.
pub fn series_count(t: &Topology) -> u64 {
    let nodes = u64::from(t.nodes) * (8 * u64::from(t.cpus_per_node) + NODE_SERIES_FIXED);
    let per_pod = POD_SERIES_FIXED
        + PER_CONTAINER * u64::from(t.containers_per_pod)
        + PER_HANDLER * u64::from(t.http_handlers);
    nodes + pod_slots(t) * per_pod
}

fn pod_slots(t: &Topology) -> u64 {
    u64::from(t.namespaces)
        * u64::from(t.deployments_per_namespace)
        * u64::from(t.pods_per_deployment)
}

/// Pod generations: a pod slot's generation increases each time churn replaces its pod.
pub fn advance_generations(profile: &Profile, block: u32, generations: &mut Vec<u32>) {
    let slots = pod_slots(&profile.topology) as usize;
    generations.resize(slots, 0);
    if block == 0 {
        return;
    }
    for (slot, g) in generations.iter_mut().enumerate() {
        let roll = hash(&[profile.seed, 0xc0ffee, slot as u64, u64::from(block)]);
        if (roll as f64 / u64::MAX as f64) < profile.pod_churn {
            *g += 1;
        }
    }
}

/// Builds every series of a block.
pub fn block_series(
    profile: &Profile,
    generations: &[u32],
    interner: &mut Interner,
) -> Vec<SeriesSpec> {
    let t = &profile.topology;
    let seed = profile.seed;
    let mut out = Vec::with_capacity(series_count(t) as usize);
    let mut push =
        |interner: &mut Interner, labels: &[(&str, &str)], kind: Kind, group: u64, target: u64| {
            let mut ids: Vec<(u32, u32)> = labels
                .iter()
                .map(|(n, v)| (interner.id(n), interner.id(v)))
                .collect();
            ids.sort_by(|a, b| interner.get(a.0).cmp(interner.get(b.0)));
            out.push(SeriesSpec {
                labels: ids,
                kind,
                group,
                target,
            });
        };
    let ksm_target = hash(&[seed, 7]);

    for n in 0..t.nodes {
        let node = format!("node-{n:04}");
        let instance = format!("10.0.{}.{}:9100", n / 250, n % 250 + 1);
        let target = hash(&[seed, 1, u64::from(n)]);
        let g = |i: u64| hash(&[seed, 11, u64::from(n), i]);
        let base = [
            ("job", "node-exporter"),
            ("instance", instance.as_str()),
            ("node", node.as_str()),
        ];
        let with = |extra: &[(&'static str, &str)], name: &'static str| -> Vec<(&str, String)> {
            let mut v: Vec<(&str, String)> =
                base.iter().map(|(k, v)| (*k, v.to_string())).collect();
            v.push(("__name__", name.to_string()));
            v.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            v
        };
        let mut emit =
            |interner: &mut Interner, labels: Vec<(&str, String)>, kind: Kind, group: u64| {
                let pairs: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                push(interner, &pairs, kind, group, target);
            };
        for c in 0..t.cpus_per_node {
            let cpu = c.to_string();
            for (m, mode) in CPU_MODES.iter().enumerate() {
                let rate = if *mode == "idle" { 0.7 } else { 0.3 / 7.0 };
                let kind = Kind::Counter {
                    rate_per_s: rate,
                    integer: false,
                };
                emit(
                    interner,
                    with(&[("cpu", &cpu), ("mode", mode)], "node_cpu_seconds_total"),
                    kind,
                    g(u64::from(c) * 8 + m as u64),
                );
            }
        }
        let mem_total = 64.0 * 1024.0 * 1024.0 * 1024.0;
        emit(
            interner,
            with(&[], "node_memory_MemTotal_bytes"),
            Kind::Constant(mem_total),
            g(1000),
        );
        emit(
            interner,
            with(&[], "node_memory_MemAvailable_bytes"),
            Kind::Gauge {
                mean: mem_total / 3.0,
                spread: 2e8,
                integer: true,
            },
            g(1001),
        );
        emit(
            interner,
            with(&[], "node_load1"),
            Kind::Gauge {
                mean: 2.0,
                spread: 0.3,
                integer: false,
            },
            g(1002),
        );
        for (d, dev) in DEVICES.iter().enumerate() {
            for (k, name) in [
                "node_network_receive_bytes_total",
                "node_network_transmit_bytes_total",
            ]
            .iter()
            .enumerate()
            {
                let kind = Kind::Counter {
                    rate_per_s: 2e5,
                    integer: true,
                };
                emit(
                    interner,
                    with(&[("device", dev)], name),
                    kind,
                    g(1100 + (d * 2 + k) as u64),
                );
            }
        }
        for (f, (device, mountpoint, fstype)) in FILESYSTEMS.iter().enumerate() {
            let kind = Kind::Gauge {
                mean: 1e11,
                spread: 1e7,
                integer: true,
            };
            let labels = with(
                &[
                    ("device", device),
                    ("mountpoint", mountpoint),
                    ("fstype", fstype),
                ],
                "node_filesystem_avail_bytes",
            );
            emit(interner, labels, kind, g(1200 + f as u64));
        }
        emit(interner, with(&[], "up"), Kind::Constant(1.0), g(1300));
    }

    let mut slot = 0usize;
    for ns in 0..t.namespaces {
        let namespace = nth_name(NAMESPACES, ns, "ns");
        for d in 0..t.deployments_per_namespace {
            let deployment = nth_name(DEPLOYMENTS, d, "svc");
            let rs_hash = hash(&[seed, 2, u64::from(ns), u64::from(d)]);
            for _ in 0..t.pods_per_deployment {
                let generation = generations.get(slot).copied().unwrap_or(0);
                let pod_id = hash(&[seed, 3, slot as u64, u64::from(generation)]);
                let pod = format!("{deployment}-{:08x}-{}", rs_hash as u32, pod_suffix(pod_id));
                let node_idx = (pod_id % u64::from(t.nodes.max(1))) as u32;
                let node = format!("node-{node_idx:04}");
                let pod_ip = format!(
                    "10.{}.{}.{}",
                    100 + (slot / 62500) % 100,
                    (slot / 250) % 250,
                    slot % 250 + 1
                );
                let instance = format!("{pod_ip}:8080");
                let target = hash(&[seed, 4, pod_id]);
                let g = |i: u64| hash(&[seed, 12, pod_id, i]);
                let pod_base = [("namespace", namespace.as_str()), ("pod", pod.as_str())];
                let app = [
                    ("job", "kubernetes-pods"),
                    ("instance", instance.as_str()),
                    ("namespace", namespace.as_str()),
                    ("pod", pod.as_str()),
                ];
                let mut emit = |interner: &mut Interner,
                                base: &[(&str, &str)],
                                name: &str,
                                extra: &[(&str, &str)],
                                kind: Kind,
                                group: u64,
                                target: u64| {
                    let mut v: Vec<(&str, &str)> = base.to_vec();
                    v.push(("__name__", name));
                    v.extend_from_slice(extra);
                    push(interner, &v, kind, group, target);
                };

                emit(interner, &app, "up", &[], Kind::Constant(1.0), g(1), target);
                emit(
                    interner,
                    &app,
                    "process_cpu_seconds_total",
                    &[],
                    Kind::Counter {
                        rate_per_s: 0.2,
                        integer: false,
                    },
                    g(2),
                    target,
                );
                emit(
                    interner,
                    &app,
                    "process_resident_memory_bytes",
                    &[],
                    Kind::Gauge {
                        mean: 3e8,
                        spread: 4e6,
                        integer: true,
                    },
                    g(3),
                    target,
                );
                emit(
                    interner,
                    &app,
                    "go_goroutines",
                    &[],
                    Kind::Gauge {
                        mean: 120.0,
                        spread: 3.0,
                        integer: true,
                    },
                    g(4),
                    target,
                );
                for h in 0..t.http_handlers {
                    let handler = nth_name(HANDLERS, h, "/api/h");
                    let popularity = 1.0 / f64::from(h + 1);
                    for (mi, method) in METHODS.iter().enumerate() {
                        for (ci, code) in CODES.iter().enumerate() {
                            let rate = 20.0 * popularity * [0.9, 0.08, 0.02][ci] * [0.8, 0.2][mi];
                            let kind = Kind::Counter {
                                rate_per_s: rate,
                                integer: true,
                            };
                            let extra = [
                                ("handler", handler.as_str()),
                                ("method", *method),
                                ("code", *code),
                            ];
                            emit(
                                interner,
                                &app,
                                "http_requests_total",
                                &extra,
                                kind,
                                g(100 + u64::from(h) * 16 + (mi * 3 + ci) as u64),
                                target,
                            );
                        }
                        let group = g(10_000 + u64::from(h) * 2 + mi as u64);
                        let rate = 20.0 * popularity * [0.8, 0.2][mi];
                        let latency = 0.02 * (1.0 + f64::from(h % 4));
                        for (li, le) in LE.iter().enumerate() {
                            let fraction = bucket_fraction(li, latency);
                            let extra = [
                                ("handler", handler.as_str()),
                                ("method", *method),
                                ("le", *le),
                            ];
                            emit(
                                interner,
                                &app,
                                "http_request_duration_seconds_bucket",
                                &extra,
                                Kind::Bucket {
                                    rate_per_s: rate,
                                    fraction,
                                },
                                group,
                                target,
                            );
                        }
                        let extra = [("handler", handler.as_str()), ("method", *method)];
                        emit(
                            interner,
                            &app,
                            "http_request_duration_seconds_count",
                            &extra,
                            Kind::Bucket {
                                rate_per_s: rate,
                                fraction: 1.0,
                            },
                            group,
                            target,
                        );
                        emit(
                            interner,
                            &app,
                            "http_request_duration_seconds_sum",
                            &extra,
                            Kind::Sum {
                                rate_per_s: rate,
                                mean: latency,
                            },
                            group,
                            target,
                        );
                    }
                }

                let kubelet = [
                    ("job", "kubelet"),
                    ("instance", node.as_str()),
                    ("node", node.as_str()),
                ];
                let ksm = [("job", "kube-state-metrics"), ("instance", "10.0.0.2:8080")];
                for c in 0..t.containers_per_pod {
                    let container = if c == 0 {
                        "app".to_string()
                    } else {
                        format!("sidecar-{c}")
                    };
                    let mut labels: Vec<(&str, &str)> = kubelet.to_vec();
                    labels.extend_from_slice(&pod_base);
                    labels.push(("container", container.as_str()));
                    let cg = |i: u64| g(50_000 + u64::from(c) * 8 + i);
                    let node_target = hash(&[seed, 1, u64::from(node_idx)]);
                    emit(
                        interner,
                        &labels,
                        "container_cpu_usage_seconds_total",
                        &[],
                        Kind::Counter {
                            rate_per_s: 0.15,
                            integer: false,
                        },
                        cg(0),
                        node_target,
                    );
                    emit(
                        interner,
                        &labels,
                        "container_memory_working_set_bytes",
                        &[],
                        Kind::Gauge {
                            mean: 2e8,
                            spread: 1e6,
                            integer: true,
                        },
                        cg(1),
                        node_target,
                    );
                    emit(
                        interner,
                        &labels,
                        "container_fs_writes_bytes_total",
                        &[],
                        Kind::Counter {
                            rate_per_s: 4096.0,
                            integer: true,
                        },
                        cg(2),
                        node_target,
                    );
                    let mut labels: Vec<(&str, &str)> = ksm.to_vec();
                    labels.extend_from_slice(&pod_base);
                    labels.push(("container", container.as_str()));
                    emit(
                        interner,
                        &labels,
                        "kube_pod_container_status_restarts_total",
                        &[],
                        Kind::Constant(f64::from(generation)),
                        cg(3),
                        ksm_target,
                    );
                }
                let mut labels: Vec<(&str, &str)> = ksm.to_vec();
                labels.extend_from_slice(&pod_base);
                let uid = format!("{:016x}", pod_id);
                emit(
                    interner,
                    &labels,
                    "kube_pod_info",
                    &[
                        ("node", node.as_str()),
                        ("pod_ip", pod_ip.as_str()),
                        ("uid", uid.as_str()),
                    ],
                    Kind::Constant(1.0),
                    g(5),
                    ksm_target,
                );
                for phase in PHASES {
                    let v = if *phase == "Running" { 1.0 } else { 0.0 };
                    emit(
                        interner,
                        &labels,
                        "kube_pod_status_phase",
                        &[("phase", phase)],
                        Kind::Constant(v),
                        g(6),
                        ksm_target,
                    );
                }
                slot += 1;
            }
        }
    }
    out
}

/// Kubernetes-style 5-character pod suffix.
fn pod_suffix(id: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|i| ALPHABET[((id >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// Cumulative share of requests at or below bucket `i` for an exponential-ish latency.
fn bucket_fraction(i: usize, mean_latency: f64) -> f64 {
    let le: f64 = LE[i].parse().unwrap_or(f64::INFINITY);
    if le.is_infinite() {
        1.0
    } else {
        1.0 - (-le / mean_latency).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::profile::load_profile;

    #[test]
    fn formula_matches_enumeration() {
        let p = load_profile("small").unwrap();
        let mut interner = Interner::default();
        let mut generations = Vec::new();
        advance_generations(&p.profile, 0, &mut generations);
        let series = block_series(&p.profile, &generations, &mut interner);
        assert_eq!(series.len() as u64, series_count(&p.profile.topology));
        let mut seen = std::collections::HashSet::new();
        for s in &series {
            assert!(seen.insert(s.labels.clone()), "duplicate series");
        }
    }
}
