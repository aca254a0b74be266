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
        let regex = match kind {
            MatchKind::Regex | MatchKind::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError::Regex {
                    name: name.clone(),
                    pattern: value.clone(),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            kind,
            name,
            value,
            regex,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            kind: MatchKind::Equal,
            name: name.into(),
            value: value.into(),
            regex: None,
        }
    }

    /// Whether a series whose value for this label is `value` (`""` when absent) is selected.
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchKind::Equal => self.value == value,
            MatchKind::NotEqual => self.value != value,
            MatchKind::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchKind::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
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
}
