//! Prometheus relabelling, as Thanos applies it to blocks (`--selector.relabel-config`): rules
//! run over a block's external labels plus `__block_id`, and decide whether this store serves
//! the block. `hashmod` over `__block_id` is how operators shard blocks across store pods.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RelabelError {
    #[error("invalid relabel config: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    source_labels: Vec<String>,
    separator: Option<String>,
    target_label: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    replacement: Option<String>,
    #[serde(default)]
    action: Action,
}

/// One relabelling rule, with Prometheus' defaults filled in.
#[derive(Debug, Clone)]
pub struct Rule {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub target_label: String,
    pub regex: Regex,
    pub modulus: u64,
    pub replacement: String,
    pub action: Action,
}

/// Parses a YAML list of relabel rules (the content of `--selector.relabel-config`).
pub fn parse_rules(yaml: &str) -> Result<Vec<Rule>, RelabelError> {
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<RawRule> =
        serde_yaml::from_str(yaml).map_err(|e| RelabelError::Config(e.to_string()))?;
    raw.into_iter().map(Rule::new).collect()
}

impl Rule {
    fn new(raw: RawRule) -> Result<Self, RelabelError> {
        let pattern = raw.regex.unwrap_or_else(|| "(.*)".into());
        let regex = Regex::new(&format!("^(?s:{pattern})$"))
            .map_err(|e| RelabelError::Config(format!("regex {pattern:?}: {e}")))?;
        let rule = Rule {
            source_labels: raw.source_labels,
            separator: raw.separator.unwrap_or_else(|| ";".into()),
            target_label: raw.target_label.unwrap_or_default(),
            regex,
            modulus: raw.modulus.unwrap_or(0),
            replacement: raw.replacement.unwrap_or_else(|| "$1".into()),
            action: raw.action,
        };
        let needs_target = matches!(rule.action, Action::Replace | Action::HashMod);
        if needs_target && rule.target_label.is_empty() {
            return Err(RelabelError::Config(format!(
                "{:?} needs target_label",
                rule.action
            )));
        }
        if rule.action == Action::HashMod && rule.modulus == 0 {
            return Err(RelabelError::Config("hashmod needs a modulus > 0".into()));
        }
        Ok(rule)
    }
}

/// Applies `rules` in order; `None` when a keep/drop rule dropped the label set.
pub fn relabel(
    labels: &BTreeMap<String, String>,
    rules: &[Rule],
) -> Option<BTreeMap<String, String>> {
    let mut labels = labels.clone();
    for rule in rules {
        let value = rule
            .source_labels
            .iter()
            .map(|l| labels.get(l).map(String::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&rule.separator);
        match rule.action {
            Action::Keep if !rule.regex.is_match(&value) => return None,
            Action::Drop if rule.regex.is_match(&value) => return None,
            Action::Keep | Action::Drop => {}
            Action::Replace => {
                if let Some(caps) = rule.regex.captures(&value) {
                    let mut target = String::new();
                    caps.expand(&rule.target_label, &mut target);
                    let mut replaced = String::new();
                    caps.expand(&rule.replacement, &mut replaced);
                    if replaced.is_empty() {
                        labels.remove(&target);
                    } else if !target.is_empty() {
                        labels.insert(target, replaced);
                    }
                }
            }
            Action::HashMod => {
                let digest = Md5::digest(value.as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let shard = u64::from_be_bytes(tail) % rule.modulus;
                labels.insert(rule.target_label.clone(), shard.to_string());
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, v)| {
                        rule.regex.captures(name).map(|caps| {
                            let mut new_name = String::new();
                            caps.expand(&rule.replacement, &mut new_name);
                            (new_name, v.clone())
                        })
                    })
                    .collect();
                labels.extend(mapped);
            }
            Action::LabelDrop => labels.retain(|name, _| !rule.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|name, _| rule.regex.is_match(name)),
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keep_drop_and_hashmod_shard_blocks() {
        let rules = parse_rules(
            r#"
- action: hashmod
  source_labels: ["__block_id"]
  target_label: shard
  modulus: 3
- action: keep
  source_labels: ["shard"]
  regex: "1"
"#,
        )
        .unwrap();
        let ids = [
            "01HQ3Z1Y5K8N0C2V9W4XG6T7BR",
            "01HQ3Z1Y5K8N0C2V9W4XG6T7BS",
            "01HQ3Z1Y5K8N0C2V9W4XG6T7BT",
            "01HQ3Z1Y5K8N0C2V9W4XG6T7BV",
        ];
        let kept = ids
            .iter()
            .filter(|id| relabel(&set(&[("__block_id", id)]), &rules).is_some())
            .count();
        assert!(
            kept < ids.len(),
            "a third of the blocks, not all, go to shard 1"
        );
        // Each block lands on exactly one of the three shards.
        for id in ids {
            let shards: Vec<u64> = (0..3)
                .filter(|s| {
                    let rules = parse_rules(&format!(
                        "- {{action: hashmod, source_labels: [__block_id], target_label: shard, modulus: 3}}\n- {{action: keep, source_labels: [shard], regex: \"{s}\"}}\n"
                    ))
                    .unwrap();
                    relabel(&set(&[("__block_id", id)]), &rules).is_some()
                })
                .collect();
            assert_eq!(shards.len(), 1, "{id}");
        }
        let drop =
            parse_rules("- {action: drop, source_labels: [cluster], regex: 'eu-.*'}").unwrap();
        assert!(relabel(&set(&[("cluster", "eu-1")]), &drop).is_none());
        assert!(relabel(&set(&[("cluster", "us-1")]), &drop).is_some());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; last 8 bytes as big-endian u64.
        let rules =
            parse_rules("- {action: hashmod, source_labels: [a], target_label: h, modulus: 1000}")
                .unwrap();
        let out = relabel(&set(&[("a", "foo")]), &rules).unwrap();
        assert_eq!(out["h"], (0xedef654fccc4a4d8u64 % 1000).to_string());
    }

    #[test]
    fn replace_and_bad_configs() {
        let rules = parse_rules("- {source_labels: [cluster, replica], separator: '/', regex: '(.*)/(.*)', target_label: id, replacement: '$2@$1'}").unwrap();
        assert_eq!(
            relabel(&set(&[("cluster", "c"), ("replica", "r")]), &rules).unwrap()["id"],
            "r@c"
        );
        assert!(parse_rules("- {action: hashmod, source_labels: [a], target_label: h}").is_err());
        assert!(parse_rules("- {action: keep, regex: '('}").is_err());
        assert!(parse_rules("- {action: explode}").is_err());
        assert!(parse_rules("").unwrap().is_empty());
    }
}
