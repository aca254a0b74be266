//! Data profiles: the shape of a generated data set, read from `bench-data/<name>.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("reading profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("profile {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A profile as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    /// Same seed, same profile: byte-identical blocks.
    pub seed: u64,
    /// RFC 3339 start of the first block (aligned down to the block duration).
    pub start: String,
    /// Number of consecutive blocks.
    pub blocks: u32,
    #[serde(default = "default_block_duration")]
    pub block_duration: String,
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval: String,
    /// Fraction of pods replaced by new ones (new names, new series) at each block.
    #[serde(default)]
    pub pod_churn: f64,
    /// Probability per sample that a counter restarts from zero.
    #[serde(default)]
    pub counter_reset_probability: f64,
    /// Probability that a scrape's timestamp is a few milliseconds late.
    #[serde(default)]
    pub scrape_jitter_probability: f64,
    /// Written to the `thanos.labels` section of every block's meta.json.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    pub topology: Topology,
}

/// How many of each thing the simulated Kubernetes cluster runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub nodes: u32,
    pub cpus_per_node: u32,
    pub namespaces: u32,
    pub deployments_per_namespace: u32,
    pub pods_per_deployment: u32,
    pub containers_per_pod: u32,
    /// HTTP handlers per application pod; drives request-counter and histogram cardinality.
    pub http_handlers: u32,
}

fn default_block_duration() -> String {
    "2h".into()
}

fn default_scrape_interval() -> String {
    "15s".into()
}

/// A profile with its text fields parsed and checked.
#[derive(Debug, Clone)]
pub struct ResolvedProfile {
    pub name: String,
    pub profile: Profile,
    pub start_ms: i64,
    pub block_ms: i64,
    pub interval_ms: i64,
}

impl ResolvedProfile {
    /// Expected number of series in one block (before churn).
    pub fn series_per_block(&self) -> u64 {
        super::topology::series_count(&self.profile.topology)
    }

    pub fn samples_per_series_per_block(&self) -> u64 {
        (self.block_ms / self.interval_ms) as u64
    }

    pub fn total_samples(&self) -> u64 {
        self.series_per_block()
            * self.samples_per_series_per_block()
            * u64::from(self.profile.blocks)
    }
}

/// Where profiles live in the repository.
pub fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data")
}

/// Loads a profile by name (`small` → `bench-data/small.toml`) or by path.
pub fn load_profile(name_or_path: &str) -> Result<ResolvedProfile, ProfileError> {
    let path = if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
        PathBuf::from(name_or_path)
    } else {
        profiles_dir().join(format!("{name_or_path}.toml"))
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
        path: shown.clone(),
        source,
    })?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("profile")
        .to_string();
    parse_profile(&name, &shown, &text)
}

pub fn parse_profile(name: &str, path: &str, text: &str) -> Result<ResolvedProfile, ProfileError> {
    let invalid = |reason: String| ProfileError::Invalid {
        path: path.to_string(),
        reason,
    };
    let profile: Profile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let start =
        humantime::parse_rfc3339(&profile.start).map_err(|e| invalid(format!("start: {e}")))?;
    let millis = |field: &str, text: &str| -> Result<i64, ProfileError> {
        let d: Duration =
            humantime::parse_duration(text).map_err(|e| invalid(format!("{field}: {e}")))?;
        match i64::try_from(d.as_millis()) {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(invalid(format!("{field} must be a positive duration"))),
        }
    };
    let block_ms = millis("block_duration", &profile.block_duration)?;
    let interval_ms = millis("scrape_interval", &profile.scrape_interval)?;
    if interval_ms >= block_ms {
        return Err(invalid(
            "scrape_interval must be shorter than block_duration".into(),
        ));
    }
    for (field, p) in [
        ("pod_churn", profile.pod_churn),
        (
            "counter_reset_probability",
            profile.counter_reset_probability,
        ),
        (
            "scrape_jitter_probability",
            profile.scrape_jitter_probability,
        ),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(format!("{field} must be within [0, 1]")));
        }
    }
    if profile.blocks == 0 {
        return Err(invalid("blocks must be at least 1".into()));
    }
    let start_ms = start
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| invalid("start is before 1970".into()))?
        .as_millis() as i64;
    Ok(ResolvedProfile {
        name: name.to_string(),
        start_ms: start_ms - start_ms.rem_euclid(block_ms),
        block_ms,
        interval_ms,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse() {
        for name in ["small", "medium", "large"] {
            let p = load_profile(name).unwrap();
            assert!(p.series_per_block() > 0, "{name}");
        }
        let medium = load_profile("medium").unwrap();
        let s = medium.series_per_block();
        assert!(
            (800_000..1_300_000).contains(&s),
            "medium has ~1M series, not {s}"
        );
    }

    #[test]
    fn nonsense_is_rejected() {
        let base = r#"seed = 1
start = "2026-01-01T00:00:00Z"
blocks = 1
[topology]
nodes = 1
cpus_per_node = 1
namespaces = 1
deployments_per_namespace = 1
pods_per_deployment = 1
containers_per_pod = 1
http_handlers = 1
"#;
        assert!(parse_profile("t", "t", base).is_ok());
        assert!(parse_profile("t", "t", &base.replace("blocks = 1", "blocks = 0")).is_err());
        assert!(
            parse_profile("t", "t", &base.replace("2026-01-01T00:00:00Z", "yesterday")).is_err()
        );
        assert!(parse_profile("t", "t", &format!("scrape_interval = \"3h\"\n{base}")).is_err());
        assert!(parse_profile("t", "t", &format!("typo = 1\n{base}")).is_err());
    }
}
