//! `meta.json`, with the Thanos `thanos` section, and `deletion-mark.json`.
//!
//! Fields stele does not know are kept in `extra` maps and written back unchanged, so reading
//! and rewriting a meta (as the sidecar does) never drops what a newer Prometheus or Thanos put
//! there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::encoding::DecodeError;
use super::error::{Section, TsdbError};

/// The only meta.json format version Prometheus writes and accepts.
pub const META_VERSION: u32 = 1;
pub const META_FILENAME: &str = "meta.json";
pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    /// Inclusive start of the block, in milliseconds.
    pub min_time: i64,
    /// Exclusive end of the block, in milliseconds.
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: Compaction,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    #[serde(default)]
    pub level: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    pub ulid: String,
    pub min_time: i64,
    pub max_time: i64,
}

/// The section Thanos components add to meta.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// External labels of the Prometheus (or the compactor group) the block came from.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    /// Which component produced the block: "sidecar", "compactor", "receive", ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Downsample {
    /// Resolution in milliseconds; 0 is raw data.
    #[serde(default)]
    pub resolution: i64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl BlockMeta {
    /// Parses and validates a meta.json; `file` names it in errors.
    pub fn parse(file: &str, data: &[u8]) -> Result<Self, TsdbError> {
        let meta: BlockMeta = serde_json::from_slice(data).map_err(|e| {
            TsdbError::corrupt(
                file,
                Section::Meta,
                e.column() as u64,
                DecodeError::Invalid(e.to_string()),
            )
        })?;
        meta.validate(file)?;
        Ok(meta)
    }

    fn validate(&self, file: &str) -> Result<(), TsdbError> {
        let invalid = |reason: String| Err(TsdbError::invalid(file, Section::Meta, 0, reason));
        if self.version != META_VERSION {
            return invalid(format!("unsupported meta version {}", self.version));
        }
        if ulid::Ulid::from_string(&self.ulid).is_err() {
            return invalid(format!("invalid ULID {:?}", self.ulid));
        }
        if self.min_time > self.max_time {
            return invalid(format!(
                "minTime {} is after maxTime {}",
                self.min_time, self.max_time
            ));
        }
        Ok(())
    }

    /// Serialises as Prometheus does: indented JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("meta serialises");
        out.push(b'\n');
        out
    }

    /// External labels from the Thanos section (empty for a plain Prometheus block).
    pub fn external_labels(&self) -> BTreeMap<String, String> {
        self.thanos
            .as_ref()
            .map(|t| t.labels.clone())
            .unwrap_or_default()
    }

    pub fn resolution(&self) -> i64 {
        self.thanos
            .as_ref()
            .map(|t| t.downsample.resolution)
            .unwrap_or(0)
    }
}

/// `<ULID>/deletion-mark.json`: the block will be deleted by the compactor; stop serving it
/// after a delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionMark {
    pub id: String,
    /// Unix seconds.
    pub deletion_time: i64,
    pub version: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DeletionMark {
    pub fn parse(file: &str, data: &[u8]) -> Result<Self, TsdbError> {
        serde_json::from_slice(data).map_err(|e| {
            TsdbError::corrupt(
                file,
                Section::Meta,
                e.column() as u64,
                DecodeError::Invalid(e.to_string()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_META: &str = r#"{
	"ulid": "01HQ3Z1Y5K8N0C2V9W4XG6T7BR",
	"minTime": 1700000000000,
	"maxTime": 1700007200000,
	"stats": {
		"numSamples": 1200,
		"numSeries": 10,
		"numChunks": 10,
		"numFloatSamples": 1200
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01HQ3Z1Y5K8N0C2V9W4XG6T7BR"
		],
		"hints": ["from-out-of-order"]
	},
	"version": 1,
	"thanos": {
		"labels": {"cluster": "eu-1", "replica": "a"},
		"downsample": {"resolution": 0},
		"source": "sidecar",
		"segment_files": ["000001"],
		"files": [{"rel_path": "chunks/000001", "size_bytes": 1234}, {"rel_path": "meta.json"}],
		"index_stats": {"series_max_size": 512}
	},
	"futureField": {"x": 1}
}"#;

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let meta = BlockMeta::parse("meta.json", PROMETHEUS_META.as_bytes()).unwrap();
        assert_eq!(meta.stats.num_samples, 1200);
        assert_eq!(meta.external_labels()["cluster"], "eu-1");
        assert_eq!(meta.thanos.as_ref().unwrap().files[1].size_bytes, None);
        let again = BlockMeta::parse("meta.json", &meta.to_json()).unwrap();
        assert_eq!(meta, again);
        let original: Value = serde_json::from_str(PROMETHEUS_META).unwrap();
        let written: Value = serde_json::from_slice(&meta.to_json()).unwrap();
        assert_eq!(original, written);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bad in [
            &b"{"[..],
            b"null",
            b"[]",
            br#"{"ulid":"x","minTime":0,"maxTime":1,"version":1}"#,
            br#"{"ulid":"01HQ3Z1Y5K8N0C2V9W4XG6T7BR","minTime":0,"maxTime":1,"version":2}"#,
            br#"{"ulid":"01HQ3Z1Y5K8N0C2V9W4XG6T7BR","minTime":5,"maxTime":1,"version":1}"#,
        ] {
            let err = BlockMeta::parse("b/meta.json", bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    TsdbError::Corrupt {
                        section: Section::Meta,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().starts_with("b/meta.json"));
        }
    }

    #[test]
    fn deletion_mark() {
        let m = DeletionMark::parse(
            "d",
            br#"{"id":"01HQ3Z1Y5K8N0C2V9W4XG6T7BR","deletion_time":1700000000,"version":1}"#,
        )
        .unwrap();
        assert_eq!(m.deletion_time, 1_700_000_000);
    }
}
