//! Thanos' cache YAML: `--index-cache.config(-file)` and `--store.caching-bucket.config(-file)`.
//!
//! ```yaml
//! type: MEMCACHED            # or IN-MEMORY
//! config:
//!   addresses: [memcached-0:11211, memcached-1:11211]
//!   timeout: 500ms
//! enabled_items: [Series, ExpandedPostings]   # index cache: optional, default all
//! ttl: 24h                                      # index cache: memcached expiry, default 24h
//! ```
//!
//! The index cache's top level is strict, as in Thanos (an unknown field is an error). The
//! caching bucket's top level holds Thanos' chunk and metadata tuning (`chunk_subrange_size`,
//! `metafile_content_ttl`, ...); stele caches whole chunk records rather than subranges of the
//! segment files and no metadata, so those fields are accepted and reported, but
//! `chunk_subrange_ttl`, the expiry of chunks in memcached. Backend fields are read with
//! Thanos' defaults; fields Thanos has that stele does not use are accepted and reported in
//! `ignored`, so the caller can log them.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::ItemKind;
use crate::model::size::parse_size;
use crate::model::time::parse_duration;

#[derive(Debug, thiserror::Error)]
pub enum CacheConfigError {
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("type {0:?} is not supported: use IN-MEMORY or MEMCACHED")]
    UnknownType(String),
    #[error("field {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

fn field_error(field: &'static str, message: impl Into<String>) -> CacheConfigError {
    CacheConfigError::Field {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexCacheConfig {
    pub backend: Backend,
    /// The item kinds cached at all (Thanos' `enabled_items`; empty in YAML means all).
    pub enabled_items: Vec<ItemKind>,
    /// Expiry of items in memcached.
    pub ttl: Duration,
    pub ignored: Ignored,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    InMemory {
        /// Overrides `--index-cache-size` when set.
        max_size: Option<u64>,
        max_item_size: Option<u64>,
    },
    Memcached(MemcachedConfig),
}

/// How long a memcached server is skipped after a network error or a timeout, so that an
/// unreachable memcached costs each query at most one timeout a second, not one per lookup.
pub const DEFAULT_DOWN_BACKOFF: Duration = Duration::from_secs(1);

/// Thanos' `MemcachedClientConfig`, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MemcachedConfig {
    /// `host:port`, or `dns+host:port` (resolved again on every new connection).
    pub addresses: Vec<String>,
    /// Connect, read and write timeout of one operation.
    pub timeout: Duration,
    /// Idle connections kept per server.
    pub max_idle_connections: usize,
    /// Threads storing items in the background.
    pub max_async_concurrency: usize,
    /// Items waiting to be stored; more are dropped (and counted).
    pub max_async_buffer_size: usize,
    /// Multi-gets in flight at once (0: unlimited).
    pub max_get_multi_concurrency: usize,
    /// Keys per multi-get round trip (0: all of a server's keys in one).
    pub max_get_multi_batch_size: usize,
    /// Items larger than this are not sent (0: no limit).
    pub max_item_size: u64,
    /// How long a server is skipped after a network error or a timeout. Not in Thanos' YAML
    /// (which has no such setting): always the default there.
    pub down_backoff: Duration,
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        MemcachedConfig {
            addresses: Vec::new(),
            timeout: Duration::from_millis(500),
            max_idle_connections: 100,
            max_async_concurrency: 20,
            max_async_buffer_size: 10_000,
            max_get_multi_concurrency: 100,
            max_get_multi_batch_size: 0,
            max_item_size: 1 << 20,
            down_backoff: DEFAULT_DOWN_BACKOFF,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    enabled_items: Vec<String>,
    #[serde(default)]
    ttl: Option<Value>,
}

/// The backend's `config:` mapping, read field by field so each error names its field.
struct Fields {
    map: Mapping,
}

impl Fields {
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn string(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn size(&mut self, name: &'static str) -> Result<Option<u64>, CacheConfigError> {
        self.take(name)
            .map(|v| {
                Self::string(&v)
                    .ok_or_else(|| field_error(name, "expected a size like 250MB"))
                    .and_then(|s| parse_size(&s).map_err(|e| field_error(name, e)))
            })
            .transpose()
    }

    fn duration(&mut self, name: &'static str) -> Result<Option<Duration>, CacheConfigError> {
        self.take(name).map(|v| duration(name, &v)).transpose()
    }

    fn count(&mut self, name: &'static str) -> Result<Option<usize>, CacheConfigError> {
        self.take(name)
            .map(|v| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| field_error(name, "expected a non-negative integer"))
            })
            .transpose()
    }
}

fn duration(name: &'static str, v: &Value) -> Result<Duration, CacheConfigError> {
    Fields::string(v)
        .ok_or_else(|| field_error(name, "expected a duration like 500ms"))
        .and_then(|s| parse_duration(&s).map_err(|e| field_error(name, e)))
}

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// A memcached expiry field: 24h when absent or zero, as in Thanos.
fn ttl(name: &'static str, value: Option<&Value>) -> Result<Duration, CacheConfigError> {
    let ttl = value.map(|v| duration(name, v)).transpose()?;
    Ok(ttl.filter(|t| !t.is_zero()).unwrap_or(DEFAULT_TTL))
}

/// A mapping key as the field name to report.
fn key_name(key: &Value) -> String {
    Fields::string(key).unwrap_or_else(|| format!("{key:?}"))
}

/// Fields accepted for compatibility but not used, with why (to log at start).
pub type Ignored = Vec<(String, &'static str)>;

/// The backend of `type` and its `config:` mapping, and the fields it does not use.
fn backend(kind: &str, config: Option<Value>) -> Result<(Backend, Ignored), CacheConfigError> {
    let map = match config {
        None => Mapping::new(),
        Some(Value::Mapping(m)) => m,
        Some(_) => return Err(field_error("config", "expected a mapping")),
    };
    let mut fields = Fields { map };
    let mut ignored = Vec::new();
    let backend = match kind.to_ascii_uppercase().as_str() {
        "IN-MEMORY" => Backend::InMemory {
            max_size: fields.size("max_size")?,
            max_item_size: fields.size("max_item_size")?,
        },
        "MEMCACHED" => Backend::Memcached(memcached(&mut fields, &mut ignored)?),
        _ => return Err(CacheConfigError::UnknownType(kind.to_string())),
    };
    for (name, _) in fields.map {
        let name = key_name(&name);
        ignored.push((format!("config.{name}"), "unknown field"));
    }
    Ok((backend, ignored))
}

impl IndexCacheConfig {
    pub fn parse(yaml: &str) -> Result<Self, CacheConfigError> {
        let top: TopLevel = serde_yaml::from_str(yaml)?;
        let (backend, ignored) = backend(&top.kind, top.config)?;
        let mut enabled_items = Vec::new();
        for name in &top.enabled_items {
            let kind = match name.as_str() {
                "Postings" => ItemKind::Postings,
                "Series" => ItemKind::Series,
                "ExpandedPostings" => ItemKind::ExpandedPostings,
                other => {
                    return Err(field_error(
                        "enabled_items",
                        format!(
                            "unknown item type {other:?}: use Postings, Series or ExpandedPostings"
                        ),
                    ))
                }
            };
            enabled_items.push(kind);
        }
        if enabled_items.is_empty() {
            enabled_items = ItemKind::INDEX.to_vec();
        }
        let ttl = ttl("ttl", top.ttl.as_ref())?;
        Ok(IndexCacheConfig {
            backend,
            enabled_items,
            ttl,
            ignored,
        })
    }
}

/// `--store.caching-bucket.config(-file)`: Thanos' caching-bucket YAML, which stele reads as
/// the configuration of its chunk cache.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkCacheConfig {
    pub backend: Backend,
    /// Expiry of chunks in memcached (`chunk_subrange_ttl`).
    pub ttl: Duration,
    pub ignored: Ignored,
}

#[derive(Deserialize)]
struct CachingBucketTop {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    chunk_subrange_ttl: Option<Value>,
    #[serde(flatten)]
    rest: Mapping,
}

impl ChunkCacheConfig {
    pub fn parse(yaml: &str) -> Result<Self, CacheConfigError> {
        let top: CachingBucketTop = serde_yaml::from_str(yaml)?;
        let (backend, mut ignored) = backend(&top.kind, top.config)?;
        let ttl = ttl("chunk_subrange_ttl", top.chunk_subrange_ttl.as_ref())?;
        for (name, _) in top.rest {
            let name = key_name(&name);
            let why = match name.as_str() {
                "chunk_subrange_size"
                | "max_chunks_get_range_requests"
                | "chunk_object_attrs_ttl" => {
                    "stele caches whole chunk records, not subranges of segment files"
                }
                "blocks_iter_ttl"
                | "metafile_exists_ttl"
                | "metafile_doesnt_exist_ttl"
                | "metafile_content_ttl"
                | "metafile_max_size" => {
                    "stele caches no bucket metadata; blocks are listed at each sync"
                }
                _ => "unknown field",
            };
            ignored.push((name, why));
        }
        Ok(ChunkCacheConfig {
            backend,
            ttl,
            ignored,
        })
    }
}

fn memcached(f: &mut Fields, ignored: &mut Ignored) -> Result<MemcachedConfig, CacheConfigError> {
    let d = MemcachedConfig::default();
    let addresses = match f.take("addresses") {
        Some(Value::Sequence(seq)) => seq
            .iter()
            .map(|v| {
                Fields::string(v)
                    .ok_or_else(|| field_error("addresses", "expected host:port strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(field_error("addresses", "expected a list of host:port")),
        None => Vec::new(),
    };
    if addresses.is_empty() {
        return Err(field_error("addresses", "no memcached addresses given"));
    }
    for a in &addresses {
        if a.starts_with("dnssrv+") || a.starts_with("dnssrvnoa+") {
            return Err(field_error(
                "addresses",
                format!("{a}: DNS SRV discovery is not supported; give host:port or dns+host:port"),
            ));
        }
        let plain = a.strip_prefix("dns+").unwrap_or(a);
        if plain
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err(field_error("addresses", format!("{a}: expected host:port")));
        }
    }
    let c = MemcachedConfig {
        addresses,
        timeout: f.duration("timeout")?.unwrap_or(d.timeout),
        max_idle_connections: f
            .count("max_idle_connections")?
            .unwrap_or(d.max_idle_connections),
        max_async_concurrency: f
            .count("max_async_concurrency")?
            .unwrap_or(d.max_async_concurrency),
        max_async_buffer_size: f
            .count("max_async_buffer_size")?
            .unwrap_or(d.max_async_buffer_size),
        max_get_multi_concurrency: f
            .count("max_get_multi_concurrency")?
            .unwrap_or(d.max_get_multi_concurrency),
        max_get_multi_batch_size: f
            .count("max_get_multi_batch_size")?
            .unwrap_or(d.max_get_multi_batch_size),
        max_item_size: f.size("max_item_size")?.unwrap_or(d.max_item_size),
        down_backoff: d.down_backoff,
    };
    if c.timeout.is_zero() {
        return Err(field_error("timeout", "must be positive"));
    }
    if c.max_async_concurrency == 0 {
        return Err(field_error("max_async_concurrency", "must be positive"));
    }
    if let Some(v) = f.duration("dns_provider_update_interval")? {
        if v.is_zero() {
            return Err(field_error(
                "dns_provider_update_interval",
                "must be positive",
            ));
        }
        ignored.push((
            "config.dns_provider_update_interval".into(),
            "dns+ addresses are resolved on every new connection instead",
        ));
    }
    for (name, why) in [
        (
            "auto_discovery",
            "ElastiCache auto discovery is not supported; addresses are used as given",
        ),
        (
            "set_async_circuit_breaker_config",
            "no circuit breaker; a failing server is skipped for a second after each network error",
        ),
    ] {
        if f.take(name).is_some() {
            ignored.push((format!("config.{name}"), why));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_with_thanos_defaults_and_fields() {
        let c = IndexCacheConfig::parse(
            "type: memcached\nconfig:\n  addresses: [\"127.0.0.1:11211\", dns+memcached:11211]\n  timeout: 1s\n  max_item_size: 2MiB\n  max_get_multi_batch_size: 100\n  dns_provider_update_interval: 10s\n  auto_discovery: false\n  some_new_field: 3\nenabled_items: [Series]\nttl: 1h\n",
        )
        .unwrap();
        let Backend::Memcached(m) = &c.backend else {
            panic!("{c:?}")
        };
        assert_eq!(m.addresses, ["127.0.0.1:11211", "dns+memcached:11211"]);
        assert_eq!(m.timeout, Duration::from_secs(1));
        assert_eq!(m.max_item_size, 2 << 20);
        assert_eq!(m.max_get_multi_batch_size, 100);
        assert_eq!(m.max_idle_connections, 100);
        assert_eq!(m.max_async_buffer_size, 10_000);
        assert_eq!(c.enabled_items, [ItemKind::Series]);
        assert_eq!(c.ttl, Duration::from_secs(3600));
        let ignored: Vec<&str> = c.ignored.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(
            ignored,
            [
                "config.dns_provider_update_interval",
                "config.auto_discovery",
                "config.some_new_field"
            ]
        );
    }

    #[test]
    fn caching_bucket_yaml_configures_the_chunk_cache() {
        let c = ChunkCacheConfig::parse(
            "type: IN-MEMORY\nconfig:\n  max_size: 512MB\n  validity: 1h\nchunk_subrange_size: 16000\nmax_chunks_get_range_requests: 3\nchunk_subrange_ttl: 2h\nmetafile_max_size: 1MiB\nsomething_new: 1\n",
        )
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::InMemory {
                max_size: Some(512 << 20),
                max_item_size: None
            }
        );
        assert_eq!(c.ttl, Duration::from_secs(2 * 3600));
        let ignored: Vec<&str> = c.ignored.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(
            ignored,
            [
                "config.validity",
                "chunk_subrange_size",
                "max_chunks_get_range_requests",
                "metafile_max_size",
                "something_new"
            ]
        );
        let c =
            ChunkCacheConfig::parse("type: memcached\nconfig:\n  addresses: [127.0.0.1:11211]\n")
                .unwrap();
        assert!(matches!(c.backend, Backend::Memcached(_)));
        assert_eq!(c.ttl, DEFAULT_TTL);
        assert!(ChunkCacheConfig::parse("type: REDIS\n").is_err());
        assert!(ChunkCacheConfig::parse("type: memcached\n").is_err());
    }

    #[test]
    fn the_documented_example_parses() {
        let c =
            IndexCacheConfig::parse(include_str!("../../docs/index-cache-memcached.yaml")).unwrap();
        assert!(matches!(c.backend, Backend::Memcached(_)));
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    }

    #[test]
    fn in_memory_sizes() {
        let c = IndexCacheConfig::parse("type: IN-MEMORY\nconfig:\n  max_size: 250MB\n").unwrap();
        assert_eq!(
            c.backend,
            Backend::InMemory {
                max_size: Some(250 << 20),
                max_item_size: None
            }
        );
        assert_eq!(c.enabled_items, ItemKind::INDEX);
        assert_eq!(c.ttl, DEFAULT_TTL);
        let c = IndexCacheConfig::parse("type: IN-MEMORY").unwrap();
        assert!(matches!(
            c.backend,
            Backend::InMemory { max_size: None, .. }
        ));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let err = |y: &str| IndexCacheConfig::parse(y).unwrap_err().to_string();
        assert!(err("type: REDIS").contains("\"REDIS\" is not supported"));
        assert!(err("type: IN-MEMORY\nbogus: 1").contains("bogus"));
        assert!(err("type: [").contains("invalid YAML"));
        assert!(err("type: MEMCACHED\nconfig: {}").contains("addresses"));
        assert!(err("type: MEMCACHED\nconfig:\n  addresses: [nohost]").contains("host:port"));
        assert!(err("type: MEMCACHED\nconfig:\n  addresses: [dnssrv+_m._tcp.x]").contains("SRV"));
        assert!(
            err("type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  timeout: soon")
                .contains("field timeout")
        );
        assert!(
            err("type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  max_item_size: lots")
                .contains("field max_item_size")
        );
        assert!(
            err("type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  max_async_concurrency: 0")
                .contains("max_async_concurrency")
        );
        assert!(err("type: IN-MEMORY\nenabled_items: [Chunks]").contains("enabled_items"));
    }
}
