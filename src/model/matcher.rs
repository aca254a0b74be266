//! Label matchers with Prometheus semantics.
//!
//! - Regexes are fully anchored and `.` matches newlines: `^(?s:re)$`.
//! - A series without label `l` behaves as if `l=""`: so `l=""` selects series lacking `l`,
//!   and `l!=""` selects series that have it.

use std::fmt;

use regex::Regex;
use thiserror::Error;

use super::format::quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchKind {
    pub fn operator(self) -> &'static str {
        match self {
            MatchKind::Equal => "=",
            MatchKind::NotEqual => "!=",
            MatchKind::Regex => "=~",
            MatchKind::NotRegex => "!~",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatcherError {
    #[error("invalid regex {pattern:?} for label {name:?}: {reason}")]
    Regex {
        name: String,
        pattern: String,
        reason: String,
    },
    #[error("invalid label name {0:?}")]
    LabelName(String),
}

#[derive(Clone)]
pub struct Matcher {
    pub kind: MatchKind,
    pub name: String,
    pub value: String,
    regex: Option<Regex>,
    /// For regex kinds: a shape answered without the regex engine, when the pattern has one.
    shape: Shape,
}

/// Regexes common in dashboards, recognised so that matching (and, for literals, finding the
/// values in an index) needs no regex engine and no scan over every value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// `a|b|c`: exactly these values (sorted, deduplicated).
    Literals(Vec<String>),
    /// `foo.*`
    Prefix(String),
    /// `.*`
    Any,
    /// `.+`
    NonEmpty,
    General,
}

impl Shape {
    fn of(pattern: &str) -> Shape {
        const META: &[char] = &[
            '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
        ];
        let literal = |s: &str| !s.contains(META);
        match pattern {
            ".*" => Shape::Any,
            ".+" => Shape::NonEmpty,
            _ => {
                if let Some(prefix) = pattern.strip_suffix(".*").filter(|p| literal(p)) {
                    return Shape::Prefix(prefix.to_string());
                }
                let parts: Vec<&str> = pattern.split('|').collect();
                if parts.iter().all(|p| literal(p)) {
                    let mut values: Vec<String> = parts.into_iter().map(String::from).collect();
                    values.sort();
                    values.dedup();
                    return Shape::Literals(values);
                }
                Shape::General
            }
        }
    }

    /// `None` when the regex engine must decide.
    fn matches(&self, value: &str) -> Option<bool> {
        match self {
            Shape::Literals(values) => {
                Some(values.binary_search_by(|v| v.as_str().cmp(value)).is_ok())
            }
            Shape::Prefix(p) => Some(value.starts_with(p.as_str())),
            Shape::Any => Some(true),
            Shape::NonEmpty => Some(!value.is_empty()),
            Shape::General => None,
        }
    }
}

impl Matcher {
    pub fn new(
        kind: MatchKind,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        if name.is_empty() {
            return Err(MatcherError::LabelName(name));
        }
        let (regex, shape) = match kind {
            MatchKind::Regex | MatchKind::NotRegex => (
                Some(
                    Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError::Regex {
                        name: name.clone(),
                        pattern: value.clone(),
                        reason: e.to_string(),
                    })?,
                ),
                Shape::of(&value),
            ),
            _ => (None, Shape::General),
        };
        Ok(Matcher {
            kind,
            name,
            value,
            regex,
            shape,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            kind: MatchKind::Equal,
            name: name.into(),
            value: value.into(),
            regex: None,
            shape: Shape::General,
        }
    }

    /// Whether a series whose value for this label is `value` (`""` when absent) is selected.
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchKind::Equal => self.value == value,
            MatchKind::NotEqual => self.value != value,
            MatchKind::Regex => self.regex_matches(value),
            MatchKind::NotRegex => !self.regex_matches(value),
        }
    }

    fn regex_matches(&self, value: &str) -> bool {
        self.shape
            .matches(value)
            .unwrap_or_else(|| self.regex.as_ref().is_some_and(|r| r.is_match(value)))
    }

    /// The only values this matcher selects, when it names them (`l="v"`, `l=~"a|b"`), so an
    /// index can look them up instead of scanning every value of the label.
    pub fn selected_values(&self) -> Option<Vec<&str>> {
        match (self.kind, &self.shape) {
            (MatchKind::Equal, _) => Some(vec![self.value.as_str()]),
            (MatchKind::Regex, Shape::Literals(values)) => {
                Some(values.iter().map(String::as_str).collect())
            }
            _ => None,
        }
    }

    /// True when the matcher rejects every value (`l!~".*"`).
    pub fn matches_nothing(&self) -> bool {
        self.kind == MatchKind::NotRegex && self.shape == Shape::Any
    }

    /// Whether the matcher selects series that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// The matcher selecting exactly the values this one rejects.
    pub fn inverse(&self) -> Matcher {
        let kind = match self.kind {
            MatchKind::Equal => MatchKind::NotEqual,
            MatchKind::NotEqual => MatchKind::Equal,
            MatchKind::Regex => MatchKind::NotRegex,
            MatchKind::NotRegex => MatchKind::Regex,
        };
        Matcher {
            kind,
            name: self.name.clone(),
            value: self.value.clone(),
            regex: self.regex.clone(),
            shape: self.shape.clone(),
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.name,
            self.kind.operator(),
            quote(&self.value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_semantics() {
        let re = Matcher::new(MatchKind::Regex, "a", "foo|ba.").unwrap();
        assert!(re.matches("foo") && re.matches("bar") && !re.matches("xfoo") && !re.matches(""));
        let dot = Matcher::new(MatchKind::Regex, "a", "a.b").unwrap();
        assert!(dot.matches("a\nb"), "(?s): dot matches newline");
        let any = Matcher::new(MatchKind::Regex, "a", ".*").unwrap();
        assert!(any.matches_empty());
        let some = Matcher::new(MatchKind::Regex, "a", ".+").unwrap();
        assert!(!some.matches_empty());
        assert!(Matcher::equal("a", "").matches_empty());
        assert!(!Matcher::new(MatchKind::NotEqual, "a", "")
            .unwrap()
            .matches_empty());
        assert!(Matcher::new(MatchKind::Regex, "a", "(").is_err());
        assert_ne!(re.inverse().matches("baz"), re.matches("baz"));
    }

    #[test]
    fn shapes_are_recognised_and_agree_with_the_regex_engine() {
        let shape = |p: &str| Shape::of(p);
        assert_eq!(
            shape("a|b|a"),
            Shape::Literals(vec!["a".into(), "b".into()])
        );
        assert_eq!(shape("foo.*"), Shape::Prefix("foo".into()));
        assert_eq!(shape(".*"), Shape::Any);
        assert_eq!(shape(".+"), Shape::NonEmpty);
        for general in [
            "a.b", "a\\.b", "(a|b)", "a.*|b", "[ab]", "a+", "(?i)a", "^a$", "a.+",
        ] {
            assert_eq!(shape(general), Shape::General, "{general}");
        }
        let eq = Matcher::new(MatchKind::Regex, "l", "x|y|").unwrap();
        assert_eq!(eq.selected_values(), Some(vec!["", "x", "y"]));
        assert!(eq.matches_empty());
        assert!(Matcher::new(MatchKind::NotRegex, "l", ".*")
            .unwrap()
            .matches_nothing());

        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("a".to_string()),
            Just("ab".to_string()),
            Just("".to_string()),
            Just("é".to_string()),
            Just(".*".to_string()),
            Just(".+".to_string()),
            Just("|".to_string()),
        ];
        let pattern = proptest::collection::vec(piece, 1..5).prop_map(|v| v.concat());
        proptest!(|(p in pattern, value in "[abé\n]{0,4}")| {
            let m = Matcher::new(MatchKind::Regex, "l", p.clone()).unwrap();
            let engine = m.regex.as_ref().unwrap().is_match(&value);
            prop_assert_eq!(m.matches(&value), engine, "{} on {:?}", p, value);
        });
    }
}
