//! Parser for PromQL series selectors: `metric`, `metric{l="v", m=~"re"}`, `{l!="v"}`.
//!
//! Only the selector part of PromQL: enough for `stele block dump --match` and the tools.

use thiserror::Error;

use super::labels::METRIC_NAME;
use super::matcher::{MatchKind, Matcher, MatcherError};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("selector {input:?}: {reason} at byte {pos}")]
    Syntax {
        input: String,
        pos: usize,
        reason: String,
    },
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Parses a series selector into its matchers (the metric name becomes `__name__="..."`).
///
/// Like promtool's `--match`, a selector whose matchers all match the empty value (such as
/// `{__name__=~".*"}`) is accepted and selects every series; PromQL's stricter rule belongs
/// to the query layer.
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut p = Parser { input, pos: 0 };
    let mut matchers = Vec::new();
    p.skip_ws();
    if p.peek().is_some_and(|c| c != '{') {
        let name = p.ident(true)?;
        matchers.push(Matcher::equal(METRIC_NAME, name));
        p.skip_ws();
    }
    if p.peek() == Some('{') {
        p.pos += 1;
        loop {
            p.skip_ws();
            if p.peek() == Some('}') {
                p.pos += 1;
                break;
            }
            let name = p.ident(false)?;
            p.skip_ws();
            let kind = p.operator()?;
            p.skip_ws();
            let value = p.string()?;
            matchers.push(Matcher::new(kind, name, value)?);
            p.skip_ws();
            match p.peek() {
                Some(',') => p.pos += 1,
                Some('}') => {}
                _ => return Err(p.error("expected ',' or '}'")),
            }
        }
    }
    p.skip_ws();
    if p.pos != input.len() {
        return Err(p.error("unexpected trailing input"));
    }
    if matchers.is_empty() {
        return Err(p.error("empty selector"));
    }
    Ok(matchers)
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> SelectorError {
        SelectorError::Syntax {
            input: self.input.to_string(),
            pos: self.pos,
            reason: reason.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += self.peek().map_or(0, char::len_utf8);
        }
    }

    /// A label name, or a metric name (which may also contain ':').
    fn ident(&mut self, metric: bool) -> Result<String, SelectorError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok = c == '_'
                || c.is_ascii_alphabetic()
                || (self.pos > start && c.is_ascii_digit())
                || (metric && c == ':');
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a name"));
        }
        Ok(self.input[start..self.pos].to_string())
    }

    fn operator(&mut self) -> Result<MatchKind, SelectorError> {
        let rest = &self.input[self.pos..];
        let (kind, len) = if rest.starts_with("=~") {
            (MatchKind::Regex, 2)
        } else if rest.starts_with("!~") {
            (MatchKind::NotRegex, 2)
        } else if rest.starts_with("!=") {
            (MatchKind::NotEqual, 2)
        } else if rest.starts_with('=') {
            (MatchKind::Equal, 1)
        } else {
            return Err(self.error("expected one of = != =~ !~"));
        };
        self.pos += len;
        Ok(kind)
    }

    /// A quoted string: "..." or '...' with Go escapes, or `...` raw.
    fn string(&mut self) -> Result<String, SelectorError> {
        let quote = match self.peek() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.error("expected a quoted string")),
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| self.error("unterminated string"))?;
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(out);
            }
            if c != '\\' || quote == '`' {
                out.push(c);
                continue;
            }
            let e = self
                .peek()
                .ok_or_else(|| self.error("unterminated escape"))?;
            self.pos += e.len_utf8();
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                '\\' | '"' | '\'' => out.push(e),
                'x' => out.push(self.hex_escape(2)?),
                'u' => out.push(self.hex_escape(4)?),
                'U' => out.push(self.hex_escape(8)?),
                _ => return Err(self.error("unknown escape sequence")),
            }
        }
    }

    fn hex_escape(&mut self, digits: usize) -> Result<char, SelectorError> {
        let hex = self
            .input
            .get(self.pos..self.pos + digits)
            .ok_or_else(|| self.error("short escape"))?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| self.error("bad hex escape"))?;
        self.pos += digits;
        char::from_u32(code).ok_or_else(|| self.error("escape is not a character"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selectors() {
        let m = parse_selector(
            r#"http_requests_total{job="api", code=~"5..",  path!~'/health.*', x!=""}"#,
        )
        .unwrap();
        let text: Vec<String> = m.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            text,
            [
                r#"__name__="http_requests_total""#,
                r#"job="api""#,
                r#"code=~"5..""#,
                r#"path!~"/health.*""#,
                r#"x!="""#
            ]
        );
        let m = parse_selector(r#"{a="\u00fc\"\n", b=`raw\n`,}"#).unwrap();
        assert_eq!(m[0].value, "ü\"\n");
        assert_eq!(m[1].value, "raw\\n");
        assert_eq!(parse_selector("up:rate5m").unwrap()[0].value, "up:rate5m");
    }

    #[test]
    fn rejects_bad_selectors() {
        assert_eq!(parse_selector(r#"{__name__=~'(?s:.*)'}"#).unwrap().len(), 1);
        for bad in [
            "",
            "{}",
            r#"{a="b""#,
            r#"{a~"b"}"#,
            r#"{a=~"("}"#,
            "up{",
            r#"up{a="b"} x"#,
            r#"{1a="b"}"#,
            r#"{a="\q"}"#,
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }
}
