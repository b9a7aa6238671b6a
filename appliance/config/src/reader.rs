//! A strict, span-aware reader over a parsed TOML document.
//!
//! serde stops at the first error; operators fixing a config want all of them at once, each with the key path, the
//! line and a hint. So the schema is read field by field through [`Section`], which records a [`Diagnostic`] for every
//! problem, substitutes the default, and at the end reports every key the schema did not ask for.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use toml_edit::{Item, TableLike, Value};

/// How serious a finding is: errors make the configuration unusable, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth fixing; the configuration still loads.
    Warning,
    /// The configuration cannot be used until this is fixed.
    Error,
}

/// One finding about a configuration file, located by key path and line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Dotted key path, e.g. `gateway.listen`; empty for the whole file.
    pub key: String,
    /// 1-based line in the file, when the finding points at text in it.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(line) => write!(f, "line {line}: ")?,
            None => write!(f, "        ")?,
        }
        let key = if self.key.is_empty() { "(file)" } else { &self.key };
        write!(f, "{sev}: {key}: {} (hint: {})", self.message, self.hint)
    }
}

/// The document being read, the diagnostics found so far, and where each key was written.
pub(crate) struct Ctx<'s> {
    src: &'s str,
    diags: RefCell<Vec<Diagnostic>>,
    lines: RefCell<Vec<(String, usize)>>,
}

impl<'s> Ctx<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        Ctx { src, diags: RefCell::new(Vec::new()), lines: RefCell::new(Vec::new()) }
    }

    pub(crate) fn line_of(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|s| line_at(self.src, s.start))
    }

    pub(crate) fn push(&self, d: Diagnostic) {
        self.diags.borrow_mut().push(d);
    }

    pub(crate) fn into_parts(self) -> (Vec<Diagnostic>, Vec<(String, usize)>) {
        (self.diags.into_inner(), self.lines.into_inner())
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_at(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// One table of the document (possibly absent), read key by key.
pub(crate) struct Section<'c, 's> {
    ctx: &'c Ctx<'s>,
    path: String,
    table: Option<&'c dyn TableLike>,
    seen: RefCell<Vec<String>>,
}

impl<'c, 's> Section<'c, 's> {
    pub(crate) fn root(ctx: &'c Ctx<'s>, table: &'c dyn TableLike) -> Self {
        Section { ctx, path: String::new(), table: Some(table), seen: RefCell::new(Vec::new()) }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// The item at `key`, marking it as known.
    fn item(&self, key: &str) -> Option<(&'c Item, Option<usize>)> {
        self.seen.borrow_mut().push(key.to_string());
        let (k, item) = self.table?.get_key_value(key)?;
        let line = self.ctx.line_of(k.span().or_else(|| item.span()));
        if let Some(line) = line {
            self.ctx.lines.borrow_mut().push((self.key_path(key), line));
        }
        Some((item, line))
    }

    pub(crate) fn error(&self, key: &str, line: Option<usize>, message: String, hint: &str) {
        self.ctx.push(Diagnostic {
            severity: Severity::Error,
            key: self.key_path(key),
            line,
            message,
            hint: hint.to_string(),
        });
    }

    /// A sub-table; absent means "all defaults".
    pub(crate) fn section(&self, key: &str) -> Section<'c, 's> {
        let table = match self.item(key) {
            None => None,
            Some((item, line)) => match item.as_table_like() {
                Some(t) => Some(t),
                None => {
                    self.error(
                        key,
                        line,
                        format!("expected a table, found {}", item.type_name()),
                        &format!("write it as a section: [{}]", self.key_path(key)),
                    );
                    None
                }
            },
        };
        Section { ctx: self.ctx, path: self.key_path(key), table, seen: RefCell::new(Vec::new()) }
    }

    fn value(&self, key: &str, want: &str, hint: &str) -> Option<(&'c Value, Option<usize>)> {
        let (item, line) = self.item(key)?;
        match item.as_value() {
            Some(v) => Some((v, line)),
            None => {
                self.error(key, line, format!("expected {want}, found {}", item.type_name()), hint);
                None
            }
        }
    }

    /// An optional string; `None` when absent or mistyped (the latter is reported).
    pub(crate) fn opt_str(&self, key: &str, hint: &str) -> Option<(String, Option<usize>)> {
        let (v, line) = self.value(key, "a string", hint)?;
        match v.as_str() {
            Some(s) => Some((s.to_string(), line)),
            None => {
                self.error(key, line, format!("expected a string, found {}", v.type_name()), hint);
                None
            }
        }
    }

    /// A string with a default.
    pub(crate) fn string(&self, key: &str, default: &str, hint: &str) -> String {
        self.opt_str(key, hint).map(|(s, _)| s).unwrap_or_else(|| default.to_string())
    }

    /// A boolean with a default.
    pub(crate) fn boolean(&self, key: &str, default: bool) -> bool {
        let hint = "write true or false, without quotes";
        let Some((v, line)) = self.value(key, "a boolean", hint) else {
            return default;
        };
        v.as_bool().unwrap_or_else(|| {
            self.error(key, line, format!("expected a boolean, found {}", v.type_name()), hint);
            default
        })
    }

    /// An integer within `[min, max]`, with a default.
    pub(crate) fn integer(&self, key: &str, default: i64, min: i64, max: i64) -> i64 {
        let hint = format!("write a whole number from {min} to {max}, without quotes");
        let Some((v, line)) = self.value(key, "an integer", &hint) else {
            return default;
        };
        match v.as_integer() {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.error(key, line, format!("{n} is out of range"), &hint);
                default
            }
            None => {
                self.error(key, line, format!("expected an integer, found {}", v.type_name()), &hint);
                default
            }
        }
    }

    /// A string parsed with `FromStr`, with a default.
    pub(crate) fn parsed<T: FromStr>(&self, key: &str, default: T, what: &str, hint: &str) -> T {
        let Some((s, line)) = self.opt_str(key, hint) else {
            return default;
        };
        s.parse().unwrap_or_else(|_| {
            self.error(key, line, format!("{s:?} is not {what}"), hint);
            default
        })
    }

    /// One of a fixed set of words, with a default.
    pub(crate) fn choice(&self, key: &str, choices: &[&'static str], default: &'static str) -> &'static str {
        let hint = format!("use one of: {}", choices.join(", "));
        let Some((s, line)) = self.opt_str(key, &hint) else {
            return default;
        };
        match choices.iter().find(|c| **c == s) {
            Some(c) => c,
            None => {
                self.error(key, line, format!("{s:?} is not a known value"), &hint);
                default
            }
        }
    }

    /// Report every key in this table that the schema did not read.
    pub(crate) fn finish(&self) {
        let Some(table) = self.table else { return };
        let seen = self.seen.borrow();
        for (key, item) in table.iter() {
            if seen.iter().any(|s| s == key) {
                continue;
            }
            let line = self.ctx.line_of(table.get_key_value(key).and_then(|(k, _)| k.span()).or_else(|| item.span()));
            let hint = match closest(key, &seen) {
                Some(near) => format!("did you mean `{near}`? Remove or rename it"),
                None if seen.is_empty() => "this section takes no keys; remove it".to_string(),
                None => format!("known keys here: {}", seen.join(", ")),
            };
            self.error(key, line, "unknown key".to_string(), &hint);
        }
    }
}

/// The known key nearest to `key` by edit distance, if it is close enough to be a typo.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (levenshtein(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggestions() {
        let known = vec!["listen".to_string(), "admin_listen".to_string()];
        assert_eq!(closest("lisen", &known), Some("listen"));
        assert_eq!(closest("admin_lsten", &known), Some("admin_listen"));
        assert_eq!(closest("zzzzzzzz", &known), None);
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 4), 3);
    }
}
