//! `stele gen`: realistic Kubernetes / node-exporter data written directly as TSDB blocks.
//!
//! A profile (`bench-data/*.toml`) fixes the topology, the span and the seed; the same profile
//! always produces byte-identical blocks.

pub mod profile;
pub(crate) mod topology;
pub(crate) mod values;

use std::collections::HashMap;
use std::path::Path;

use indicatif::ProgressBar;
use thiserror::Error;
use ulid::Ulid;

use crate::block::BlockWriter;
use crate::tsdb::meta::{BlockMeta, ThanosMeta};
use crate::tsdb::TsdbError;

pub use profile::{load_profile, ResolvedProfile};
use topology::{advance_generations, block_series, Interner};
use values::{fill_samples, hash, hash_str, initial_state, Scrapes, ValueParams};

#[derive(Debug, Error)]
pub enum GenError {
    #[error(transparent)]
    Profile(#[from] profile::ProfileError),
    #[error(transparent)]
    Block(#[from] TsdbError),
}

/// Writes every block of `profile` under `output` (created if needed). `progress` counts
/// samples; pass `ProgressBar::hidden()` for none.
pub fn generate(
    profile: &ResolvedProfile,
    output: &Path,
    progress: &ProgressBar,
) -> Result<Vec<BlockMeta>, GenError> {
    std::fs::create_dir_all(output).map_err(|e| TsdbError::io(output, e))?;
    let p = &profile.profile;
    let params = ValueParams {
        interval_s: profile.interval_ms as f64 / 1000.0,
        reset_probability: p.counter_reset_probability,
    };
    let mut generations = Vec::new();
    let mut states: HashMap<u64, f64> = HashMap::new();
    let mut metas = Vec::new();
    let mut scrapes = Vec::new();
    let mut samples = Vec::new();
    for block in 0..p.blocks {
        let min_time = profile.start_ms + i64::from(block) * profile.block_ms;
        let max_time = min_time + profile.block_ms;
        advance_generations(p, block, &mut generations);
        let mut interner = Interner::default();
        let mut specs = block_series(p, &generations, &mut interner);
        let (symbols, remap) = interner.sorted();
        for s in &mut specs {
            for (n, v) in &mut s.labels {
                *n = remap[*n as usize];
                *v = remap[*v as usize];
            }
        }
        // Ids now follow string order, so this is Prometheus' label-set order.
        specs.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));

        let ulid = Ulid::from_parts(
            min_time as u64,
            u128::from(hash(&[p.seed, u64::from(block)])),
        );
        let mut writer = BlockWriter::create(
            output,
            ulid,
            min_time,
            max_time,
            symbols.iter().map(String::as_str),
        )?;
        let mut next_states = HashMap::with_capacity(specs.len());
        let mut labels: Vec<(&str, &str)> = Vec::new();
        for spec in &specs {
            labels.clear();
            labels.extend(
                spec.labels
                    .iter()
                    .map(|&(n, v)| (symbols[n as usize].as_str(), symbols[v as usize].as_str())),
            );
            let key = labels
                .iter()
                .fold(p.seed, |h, (n, v)| hash_str(hash_str(h, n), v));
            let mut state = states
                .get(&key)
                .copied()
                .unwrap_or_else(|| initial_state(spec.kind, spec.group, block > 0));
            Scrapes::new(
                profile.interval_ms,
                p.scrape_jitter_probability,
                spec.target,
            )
            .in_range(min_time, max_time, &mut scrapes);
            fill_samples(
                spec.kind,
                spec.group,
                &params,
                &mut state,
                &scrapes,
                &mut samples,
            );
            writer.add_series_samples(&labels, &samples)?;
            next_states.insert(key, state);
            progress.inc(samples.len() as u64);
        }
        states = next_states;
        let thanos = ThanosMeta {
            labels: p.external_labels.clone(),
            source: "stele-gen".into(),
            ..Default::default()
        };
        let meta = writer.finish(Some(thanos))?;
        tracing::info!(block = %meta.ulid, series = meta.stats.num_series, samples = meta.stats.num_samples, "block written");
        metas.push(meta);
    }
    Ok(metas)
}
