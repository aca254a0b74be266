//! Which blocks of the bucket this process serves: listing, meta.json, and the filters.
//!
//! A block is `<ULID>/` with `meta.json` written last (Thanos uploads chunks, then the index,
//! then the meta), so a directory without meta.json is an upload in progress and is skipped.
//! The filters follow Thanos: consistency delay, deletion marks, time partition, relabelling.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use thiserror::Error;
use ulid::Ulid;

use super::relabel::{relabel, Rule};
use crate::model::time::TimeBound;
use crate::tsdb::meta::{BlockMeta, DeletionMark, DELETION_MARK_FILENAME, META_FILENAME};

#[derive(Debug, Error)]
pub enum DiscoverError {
    #[error("listing the bucket: {0}")]
    List(#[source] object_store::Error),
}

/// The filters of a sync, from the store's flags.
#[derive(Debug, Clone)]
pub struct BlockFilters {
    /// Blocks younger than this (by ULID time) are not served yet, unless made by a compactor.
    pub consistency_delay: Duration,
    /// Blocks marked for deletion longer ago than this are dropped.
    pub ignore_deletion_marks_delay: Duration,
    pub min_time: TimeBound,
    pub max_time: TimeBound,
    /// `--selector.relabel-config` rules over the external labels and `__block_id`.
    pub relabel: Vec<Rule>,
    /// Concurrent meta.json fetches.
    pub concurrency: usize,
}

impl Default for BlockFilters {
    fn default() -> Self {
        BlockFilters {
            consistency_delay: Duration::ZERO,
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            min_time: TimeBound::MIN,
            max_time: TimeBound::MAX,
            relabel: Vec::new(),
            concurrency: 32,
        }
    }
}

/// Why a block directory is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// No meta.json: an upload in progress or an abandoned one.
    NoMeta,
    /// meta.json is unreadable or invalid.
    BadMeta(String),
    TooFresh,
    MarkedForDeletion,
    OutsideTimeRange,
    Relabelled,
    /// Downsampled (resolution > 0): its aggregate chunks are not served yet.
    Downsampled,
}

impl Skip {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::NoMeta => "no-meta-json",
            Skip::BadMeta(_) => "corrupted-meta-json",
            Skip::TooFresh => "too-fresh",
            Skip::MarkedForDeletion => "marked-for-deletion",
            Skip::OutsideTimeRange => "time-excluded",
            Skip::Relabelled => "label-excluded",
            Skip::Downsampled => "downsampled",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::BadMeta(e) => write!(f, "{}: {e}", self.reason()),
            _ => f.write_str(self.reason()),
        }
    }
}

/// The outcome of one discovery pass.
#[derive(Debug, Default)]
pub struct Discovered {
    pub blocks: BTreeMap<Ulid, BlockMeta>,
    pub skipped: Vec<(Ulid, Skip)>,
    /// Deletion times (Unix seconds) of the kept blocks that carry a deletion mark (still
    /// within `--ignore-deletion-marks-delay`).
    pub marked: BTreeMap<Ulid, i64>,
    /// Blocks whose meta.json or deletion mark could not be fetched (transient errors): the
    /// caller keeps serving what it already has for them.
    pub failed: Vec<(Ulid, String)>,
}

/// Lists the bucket's blocks and applies `filters`; `now_ms` is the wall clock.
pub async fn discover(
    bucket: &Arc<dyn ObjectStore>,
    filters: &BlockFilters,
    now_ms: i64,
) -> Result<Discovered, DiscoverError> {
    let listing = bucket
        .list_with_delimiter(None)
        .await
        .map_err(DiscoverError::List)?;
    let ids: Vec<Ulid> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().and_then(|n| Ulid::from_string(n).ok()))
        .collect();

    let results: Vec<(Ulid, Fetched)> = futures::stream::iter(ids)
        .map(|id| async move { (id, fetch_block(bucket, id, filters, now_ms).await) })
        .buffer_unordered(filters.concurrency.max(1))
        .collect()
        .await;

    let mut out = Discovered::default();
    for (id, r) in results {
        match r {
            Ok(Ok((meta, mark))) => {
                out.blocks.insert(id, meta);
                if let Some(deletion_time) = mark {
                    out.marked.insert(id, deletion_time);
                }
            }
            Ok(Err(skip)) => out.skipped.push((id, skip)),
            Err(e) => out.failed.push((id, e)),
        }
    }
    out.skipped.sort_by_key(|s| s.0);
    out.failed.sort_by_key(|s| s.0);
    Ok(out)
}

/// A block's meta.json and deletion time if marked: served (`Ok(Ok)`), skipped (`Ok(Err)`),
/// or not fetched because of a transient error (`Err`).
type Fetched = Result<Result<(BlockMeta, Option<i64>), Skip>, String>;

async fn fetch_block(
    bucket: &Arc<dyn ObjectStore>,
    id: Ulid,
    filters: &BlockFilters,
    now_ms: i64,
) -> Fetched {
    let meta_path = Path::from(format!("{id}/{META_FILENAME}"));
    let Some(meta_bytes) = get_optional(bucket, &meta_path).await? else {
        return Ok(Err(Skip::NoMeta));
    };
    let meta = match BlockMeta::parse(meta_path.as_ref(), &meta_bytes) {
        Ok(m) if m.ulid == id.to_string() => m,
        Ok(m) => {
            return Ok(Err(Skip::BadMeta(format!(
                "meta.json names block {} but lives in {id}",
                m.ulid
            ))))
        }
        Err(e) => return Ok(Err(Skip::BadMeta(e.to_string()))),
    };

    let source = meta
        .thanos
        .as_ref()
        .map(|t| t.source.as_str())
        .unwrap_or("");
    let made_by_compactor = matches!(source, "compactor" | "compactor.repair" | "bucket.repair");
    let age_ms = now_ms.saturating_sub(id.timestamp_ms() as i64);
    if !made_by_compactor && age_ms < filters.consistency_delay.as_millis() as i64 {
        return Ok(Err(Skip::TooFresh));
    }

    let (min_t, max_t) = (
        filters.min_time.resolve(now_ms),
        filters.max_time.resolve(now_ms),
    );
    if meta.max_time < min_t || meta.min_time > max_t {
        return Ok(Err(Skip::OutsideTimeRange));
    }

    if !filters.relabel.is_empty() {
        let mut labels: BTreeMap<String, String> = meta
            .thanos
            .as_ref()
            .map(|t| t.labels.clone())
            .unwrap_or_default();
        labels.insert("__block_id".into(), id.to_string());
        if relabel(&labels, &filters.relabel).is_none() {
            return Ok(Err(Skip::Relabelled));
        }
    }

    let mark_path = Path::from(format!("{id}/{DELETION_MARK_FILENAME}"));
    let mut deletion_time = None;
    if let Some(mark) = get_optional(bucket, &mark_path).await? {
        match DeletionMark::parse(mark_path.as_ref(), &mark) {
            Ok(m) => {
                let marked_for_ms = now_ms.saturating_sub(m.deletion_time.saturating_mul(1000));
                if marked_for_ms > filters.ignore_deletion_marks_delay.as_millis() as i64 {
                    return Ok(Err(Skip::MarkedForDeletion));
                }
                deletion_time = Some(m.deletion_time);
            }
            // Thanos treats an unreadable mark as no mark: serving is the safe side.
            Err(e) => tracing::warn!(block = %id, error = %e, "ignoring invalid deletion mark"),
        }
    }
    Ok(Ok((meta, deletion_time)))
}

/// Bytes of `path`, `None` when it does not exist; other errors are transient failures.
async fn get_optional(
    bucket: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Option<bytes::Bytes>, String> {
    match bucket.get(path).await {
        Ok(r) => r
            .bytes()
            .await
            .map(Some)
            .map_err(|e| format!("{path}: {e}")),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Sizes of the files of a block (`index`, `chunks/000001`, ...) by listing its directory.
pub async fn block_files(
    bucket: &Arc<dyn ObjectStore>,
    id: Ulid,
) -> Result<BTreeMap<String, u64>, object_store::Error> {
    let prefix = Path::from(id.to_string());
    let objects: Vec<object_store::ObjectMeta> = bucket.list(Some(&prefix)).try_collect().await?;
    let base = format!("{id}/");
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let rel = o.location.as_ref().strip_prefix(&base)?.to_string();
            Some((rel, o.size))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    const DAY_MS: i64 = 86_400_000;

    fn meta_json(id: Ulid, min: i64, max: i64, labels: &str, source: &str) -> String {
        format!(
            r#"{{"ulid":"{id}","minTime":{min},"maxTime":{max},"stats":{{"numSamples":1,"numSeries":1,"numChunks":1}},"compaction":{{"level":1,"sources":["{id}"]}},"version":1,"thanos":{{"labels":{labels},"downsample":{{"resolution":0}},"source":"{source}"}}}}"#
        )
    }

    async fn put(b: &Arc<dyn ObjectStore>, path: &str, body: String) {
        b.put(&Path::from(path), bytes::Bytes::from(body).into())
            .await
            .unwrap();
    }

    fn id_at(ms: i64, n: u8) -> Ulid {
        Ulid::from_parts(ms as u64, u128::from(n))
    }

    #[tokio::test]
    async fn filters_follow_thanos() {
        let b: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let now = 100 * DAY_MS;
        let ok = id_at(now - DAY_MS, 1);
        let partial = id_at(now - DAY_MS, 2);
        let fresh = id_at(now - 1000, 3);
        let fresh_compacted = id_at(now - 1000, 4);
        let deleted = id_at(now - DAY_MS, 5);
        let just_marked = id_at(now - DAY_MS, 6);
        let old = id_at(now - DAY_MS, 7);
        let other_shard = id_at(now - DAY_MS, 8);
        let bad = id_at(now - DAY_MS, 9);
        let a = r#"{"cluster":"a"}"#;
        put(
            &b,
            &format!("{ok}/meta.json"),
            meta_json(ok, 0, now, a, "sidecar"),
        )
        .await;
        put(&b, &format!("{partial}/index"), "x".into()).await;
        put(
            &b,
            &format!("{fresh}/meta.json"),
            meta_json(fresh, 0, now, a, "sidecar"),
        )
        .await;
        put(
            &b,
            &format!("{fresh_compacted}/meta.json"),
            meta_json(fresh_compacted, 0, now, a, "compactor"),
        )
        .await;
        for (id, when) in [
            (deleted, now / 1000 - 2 * 86_400),
            (just_marked, now / 1000 - 60),
        ] {
            put(
                &b,
                &format!("{id}/meta.json"),
                meta_json(id, 0, now, a, "sidecar"),
            )
            .await;
            put(
                &b,
                &format!("{id}/deletion-mark.json"),
                format!(r#"{{"id":"{id}","deletion_time":{when},"version":1}}"#),
            )
            .await;
        }
        put(
            &b,
            &format!("{old}/meta.json"),
            meta_json(old, 0, DAY_MS, a, "sidecar"),
        )
        .await;
        put(
            &b,
            &format!("{other_shard}/meta.json"),
            meta_json(other_shard, 0, now, r#"{"cluster":"b"}"#, "sidecar"),
        )
        .await;
        put(&b, &format!("{bad}/meta.json"), "{not json".into()).await;
        put(&b, "debug/metas/x.json", "{}".into()).await;

        let filters = BlockFilters {
            consistency_delay: Duration::from_secs(1800),
            min_time: TimeBound::Relative(-30 * DAY_MS),
            relabel: crate::bucket::relabel::parse_rules(
                "- action: keep\n  source_labels: [cluster]\n  regex: a\n",
            )
            .unwrap(),
            ..Default::default()
        };
        let d = discover(&b, &filters, now).await.unwrap();
        let served: Vec<Ulid> = d.blocks.keys().copied().collect();
        let mut want = vec![ok, fresh_compacted, just_marked];
        want.sort();
        assert_eq!(served, want);
        assert_eq!(
            d.marked.iter().map(|(id, t)| (*id, *t)).collect::<Vec<_>>(),
            vec![(just_marked, now / 1000 - 60)]
        );
        let skipped: Vec<(Ulid, &str)> =
            d.skipped.iter().map(|(id, s)| (*id, s.reason())).collect();
        let mut want = vec![
            (partial, "no-meta-json"),
            (fresh, "too-fresh"),
            (deleted, "marked-for-deletion"),
            (old, "time-excluded"),
            (other_shard, "label-excluded"),
            (bad, "corrupted-meta-json"),
        ];
        want.sort();
        assert_eq!(skipped, want);
        assert!(d.failed.is_empty());

        let files = block_files(&b, ok).await.unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), vec!["meta.json"]);
    }
}
