//! Label rules every StoreAPI engine applies the same way: matchers on external labels are
//! settled by the engine's external labels (a series of a block or a Prometheus carries them
//! all), and replica labels are dropped when the querier asks (`without_replica_labels`).

use crate::model::{Labels, Matcher};

/// The matchers left once those on external labels are settled by `external`; `None` when an
/// external label contradicts one (nothing here can match).
pub fn settle_external(external: &Labels, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
    let mut left = Vec::with_capacity(matchers.len());
    for m in matchers {
        match external.get(&m.name) {
            Some(v) if !m.matches(v) => return None,
            Some(_) => {}
            None => left.push(m.clone()),
        }
    }
    Some(left)
}

/// Whether labels (external labels, `__block_id`) pass a request's block matchers; an absent
/// label is the empty value, as for series.
pub fn match_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

/// Whether `labels` hold any of the label `names`.
pub fn has_any(labels: &Labels, names: &[String]) -> bool {
    !names.is_empty() && labels.iter().any(|l| names.iter().any(|n| *n == l.name))
}

/// `labels` without the label `names` (replica labels); unchanged when it holds none.
pub fn without(labels: Labels, names: &[String]) -> Labels {
    if !has_any(&labels, names) {
        return labels;
    }
    Labels::from_pairs(
        labels
            .iter()
            .filter(|l| !names.iter().any(|n| *n == l.name))
            .map(|l| (l.name.as_str(), l.value.as_str())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_selector;

    #[test]
    fn external_labels_settle_or_contradict() {
        let ext = Labels::from_pairs([("cluster", "eu"), ("replica", "a")]);
        let ms = parse_selector(r#"{__name__="up",cluster=~"eu|us",job!=""}"#).unwrap();
        let left = settle_external(&ext, &ms).unwrap();
        assert_eq!(left.len(), 2, "the matcher on cluster is settled");
        assert!(left.iter().all(|m| m.name != "cluster"));
        let ms = parse_selector(r#"{__name__="up",cluster="us"}"#).unwrap();
        assert!(settle_external(&ext, &ms).is_none());
        // `l=""` matches what lacks `l`: an engine without that external label.
        let ms = parse_selector(r#"{__name__="up",zone=""}"#).unwrap();
        assert_eq!(settle_external(&ext, &ms).unwrap().len(), 2);
        assert!(match_all(&ext, &parse_selector(r#"{zone=""}"#).unwrap()));
        assert!(!match_all(
            &ext,
            &parse_selector(r#"{replica="b"}"#).unwrap()
        ));
    }

    #[test]
    fn replica_labels_drop() {
        let l = Labels::from_pairs([("__name__", "up"), ("replica", "a"), ("zone", "z")]);
        let names = vec!["replica".to_string()];
        assert!(has_any(&l, &names));
        let dropped = without(l.clone(), &names);
        assert_eq!(
            dropped,
            Labels::from_pairs([("__name__", "up"), ("zone", "z")])
        );
        assert_eq!(without(dropped.clone(), &names), dropped);
        assert_eq!(without(l.clone(), &[]), l);
    }
}
