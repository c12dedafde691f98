//! SCIM 2.0 filter and PATCH-path parser (RFC 7644 §3.4.2.2 and §3.5.2), and a
//! compiler from a parsed filter to a portable SQL `WHERE` fragment.
//!
//! # Parsing
//!
//! * [`parse`] reads a `filter` query parameter into a [`Filter`] tree.
//! * [`parse_patch_path`] reads a PATCH operation's `path` into a [`PatchPath`].
//!
//! Grammar notes (what this parser accepts):
//!
//! * Operators (`eq ne co sw ew gt ge lt le pr`), `and`, `or`, `not` and the
//!   literals `true`, `false`, `null` are case-insensitive.
//! * Precedence: `not (…)` > `and` > `or`; both `and` and `or` are left-associative
//!   (`a and b and c` is `And(And(a, b), c)`). `not` must be followed by a
//!   parenthesised expression, as in the RFC grammar. An attribute literally named
//!   `not` still works (`not pr`, `not eq 1`): `not` is negation only when the next
//!   non-blank character is `(`.
//! * Strings are JSON strings (all JSON escapes, `\uXXXX` including surrogate pairs;
//!   raw control characters are refused as in JSON). Numbers are JSON numbers.
//! * Attribute names are `ALPHA *(ALPHA / DIGIT / "-" / "_")`, optionally followed by
//!   `.subAttr`, optionally prefixed by a schema URN: for a token starting with `urn:`
//!   (any case) the URN is everything up to the last `:`, e.g.
//!   `urn:ietf:params:scim:schemas:core:2.0:User:name.familyName` has the uri
//!   `urn:ietf:params:scim:schemas:core:2.0:User`, the name `name` and the sub-attribute
//!   `familyName`. Names keep the case they were written in: a resolver should compare
//!   them case-insensitively (see [`AttrPath::is`]).
//! * Value filters `attr[valFilter]`: `attr` must not have a sub-attribute, the inner
//!   filter's attribute paths must be bare sub-attribute names (no URN, no dot), and
//!   value filters do not nest.
//! * Blanks (space, tab, CR, LF; any number of them) may separate tokens; they are
//!   not required where punctuation already separates tokens (`a eq"x"`, `(a pr)or(b pr)`).
//! * Hostile input: at most [`MAX_INPUT_BYTES`] bytes and [`MAX_DEPTH`] levels of
//!   nesting (each `(`, `not (` and `[` is one level). Parsing is a single left-to-right
//!   pass (linear time) and never panics.
//!
//! Error messages are short English sentences that say what was expected and where:
//! `at offset N` is a 0-based count of characters (not bytes) from the start of the input.
//!
//! # SQL compilation
//!
//! [`to_sql`] turns a filter into a SQL boolean expression with `$N` placeholders and
//! the values to bind. The SQL is restricted to what SQLite and PostgreSQL evaluate
//! the same way (`LOWER`, `LIKE … ESCAPE '\'`, `SUBSTR`, `LENGTH`, `REPLACE`,
//! `IS NULL`, comparisons, `AND`/`OR`/`NOT`). Choices made:
//!
//! * Every leaf evaluates to a definite TRUE or FALSE, never SQL NULL: a positive test
//!   is guarded with `col IS NOT NULL AND …`, `ne` is `col IS NULL OR col <> …`. So
//!   `not (x eq "a")` matches the rows where `x` is NULL, as SCIM expects.
//! * An attribute the resolver does not know is an attribute without a value:
//!   comparisons give `(1=0)` except `ne` which gives `(1=1)`; `pr` gives `(1=0)`;
//!   `eq null` (not present) gives `(1=1)` and `ne null` (present) gives `(1=0)`.
//! * `eq null` means "not present" and `ne null` means "present", for every kind of
//!   column. Other operators with `null`, and `gt`/`ge`/`lt`/`le`/`co`/`sw`/`ew` with
//!   `true`/`false`, are refused for any attribute, known or not.
//! * Text, case-insensitive (`case_exact: false`): both sides go through SQL `LOWER()`
//!   (`LOWER(col) = LOWER($n)`, `LOWER(col) LIKE LOWER($n) ESCAPE '\'`), and the bound
//!   value is also lower-cased in Rust with [`str::to_ascii_lowercase`] (ASCII only,
//!   because SQLite's `LOWER` folds only ASCII letters; `to_lowercase` would fold `É`
//!   in Rust where SQLite would not). `LOWER` is kept on the parameter on purpose:
//!   PostgreSQL's `LOWER` also folds non-ASCII letters, so `LOWER(col) = $n` with an
//!   ASCII-only-lowered `$n` would fail to match a stored `Émile` against the value
//!   `Émile` there; folding both sides with the same database function always matches
//!   an identical value. Residual difference: non-ASCII letters compare
//!   case-insensitively on PostgreSQL and case-sensitively on SQLite.
//! * `co`/`sw`/`ew`, case-insensitive: `LIKE` with a pattern built in Rust in which
//!   `\`, `%` and `_` of the value are escaped with `\`.
//! * `co`/`sw`/`ew`, case-exact: SQLite's `LIKE` ignores ASCII case by default and
//!   PostgreSQL's does not, so `LIKE` is not used; instead `sw` is
//!   `SUBSTR(col, 1, LENGTH($a)) = $b`, `ew` is
//!   `LENGTH(col) >= LENGTH($a) AND SUBSTR(col, LENGTH(col) - LENGTH($b) + 1) = $c`
//!   and `co` is `REPLACE(col, $a, '') <> col` (an empty value matches any non-NULL value).
//! * Each placeholder is used once (a value needed twice is bound twice).
//! * `gt`/`ge`/`lt`/`le` on text order by the database collation: byte order on SQLite,
//!   the column's collation on PostgreSQL (use `COLLATE "C"` columns for identical results).
//! * `pr` is `(col IS NOT NULL AND col <> '')` for text, `(col IS NOT NULL)` otherwise.
//! * Boolean columns accept only `eq`/`ne` with `true`/`false` (bound as [`SqlParam::Bool`]).
//! * Number columns accept `eq ne gt ge lt le` with a number; an integral value up to
//!   2^53 in magnitude is bound as [`SqlParam::Int`], others as [`SqlParam::Real`].
//! * UnixTime columns (seconds since the epoch) accept `eq ne gt ge lt le` with an
//!   RFC 3339 / xsd:dateTime string (`2011-05-13T04:42:34Z`, `…T04:42:34.5+09:00`),
//!   bound as [`SqlParam::Int`]. Comparison is at whole-second precision: a fraction
//!   of a second is truncated (so `ge "…:34.5Z"` matches a stored `…:34`). A value
//!   without a zone is taken as UTC; a leap second `:60` counts as the next second.
//! * Any other combination (a string against a number column, `co` on a dateTime, …)
//!   is a [`FilterError`]: the client's `invalidFilter`.
//! * ValuePath `emails[type eq "work"]`: the inner path `type` is resolved as
//!   `emails.type` (with the outer path's URN), emulating a single-valued attribute
//!   whose columns stand for one value.

use std::fmt;

/// Longest input accepted by [`parse`] and [`parse_patch_path`], in bytes.
pub const MAX_INPUT_BYTES: usize = 4096;
/// Deepest nesting accepted: each `(`, `not (` and `[` opens one level.
pub const MAX_DEPTH: usize = 32;
/// Deepest filter tree [`to_sql`] compiles (trees from [`parse`] stay far below).
const MAX_SQL_DEPTH: usize = 1024;

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// An attribute path: optional schema URN, attribute name, optional sub-attribute.
/// `userName`, `name.familyName`, `emails.value`, `meta.lastModified`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// A path without URN or sub-attribute.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath { uri: None, name: name.into(), sub: None }
    }

    /// A path `name.sub` without URN.
    pub fn with_sub(name: impl Into<String>, sub: impl Into<String>) -> Self {
        AttrPath { uri: None, name: name.into(), sub: Some(sub.into()) }
    }

    /// Whether the name and sub-attribute are `name` and `sub`, ignoring ASCII case
    /// (SCIM attribute names are case-insensitive). The URN is not looked at.
    #[must_use]
    pub fn is(&self, name: &str, sub: Option<&str>) -> bool {
        self.name.eq_ignore_ascii_case(name)
            && match (&self.sub, sub) {
                (None, None) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The operator's keyword in lower case (`"eq"`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn from_keyword(word: &str) -> Option<CompareOp> {
        const ALL: [CompareOp; 9] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

/// A comparison value.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work" and value co "@example.org"]`: the inner filter's paths are
    /// relative to `path` (sub-attributes of it).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// A PATCH operation's `path`: `attrPath`, `attrPath[valFilter]`, `attrPath[valFilter].subAttr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub_after_filter: Option<String>,
}

/// A filter, path or compilation error; the message is meant for the SCIM client
/// (`scimType: invalidFilter` / `invalidPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub message: String,
}

impl FilterError {
    pub fn new(message: impl Into<String>) -> Self {
        FilterError { message: message.into() }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FilterError {}

// ---------------------------------------------------------------------------
// Canonical text form
// ---------------------------------------------------------------------------

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CompValue {
    /// JSON form. A non-finite number (which [`parse`] never produces) is written `null`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => write_json_string(f, s),
            CompValue::Num(n) if !n.is_finite() => f.write_str("null"),
            // Integral values print without a fraction ("3"); others use Rust's
            // shortest round-trip form ("0.1", "1e-7", "1.5e300"), all valid JSON.
            CompValue::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{n}"),
            CompValue::Num(n) => write!(f, "{n:?}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Filter {
    /// Canonical text: lower-case keywords, single spaces, JSON values, and only the
    /// parentheses needed to parse back to the same tree (`not` always has its own).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Or(l, r) => {
                write!(f, "{l} or ")?;
                if matches!(**r, Filter::Or(..)) {
                    write!(f, "({r})")
                } else {
                    write!(f, "{r}")
                }
            }
            Filter::And(l, r) => {
                if matches!(**l, Filter::Or(..)) {
                    write!(f, "({l}) and ")?;
                } else {
                    write!(f, "{l} and ")?;
                }
                if matches!(**r, Filter::Or(..) | Filter::And(..)) {
                    write!(f, "({r})")
                } else {
                    write!(f, "{r}")
                }
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
            if let Some(sub) = &self.sub_after_filter {
                write!(f, ".{sub}")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parse a SCIM filter (RFC 7644 §3.4.2.2).
///
/// # Errors
/// A [`FilterError`] saying where and what was expected when the input is not a valid
/// filter, is longer than [`MAX_INPUT_BYTES`] or nests deeper than [`MAX_DEPTH`].
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    check_length(input, "filter")?;
    let mut p = Parser::new(input, "filter");
    p.skip_ws();
    if p.peek().is_none() {
        return Err(FilterError::new("invalid filter: the filter is empty"));
    }
    let filter = p.parse_or()?;
    p.skip_ws();
    match p.peek() {
        None => Ok(filter),
        Some(b')') => Err(p.err("unbalanced ')'")),
        Some(_) => Err(p.err(format!("expected 'and', 'or' or end of input, found {}", p.found()))),
    }
}

/// Parse a PATCH operation's `path` (RFC 7644 §3.5.2):
/// `attrPath`, `attrPath[valFilter]` or `attrPath[valFilter].subAttr`.
///
/// # Errors
/// As [`parse`], for an invalid path.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    check_length(input, "path")?;
    let mut p = Parser::new(input, "path");
    p.skip_ws();
    if p.peek().is_none() {
        return Err(FilterError::new("invalid path: the path is empty"));
    }
    let attr = p.parse_attr_path()?;
    p.skip_ws();
    let mut filter = None;
    let mut sub_after_filter = None;
    if p.peek() == Some(b'[') {
        if attr.sub.is_some() {
            return Err(p.err("a value filter '[...]' must follow an attribute name without a sub-attribute"));
        }
        filter = Some(p.parse_value_filter()?);
        if p.peek() == Some(b'.') {
            p.pos += 1;
            sub_after_filter = Some(p.parse_name("a sub-attribute name after '].'")?);
        }
        p.skip_ws();
    }
    match p.peek() {
        None => Ok(PatchPath { attr, filter, sub_after_filter }),
        Some(_) if filter.is_some() => {
            Err(p.err(format!("expected '.subAttribute' or end of path, found {}", p.found())))
        }
        Some(_) => Err(p.err(format!("expected '[', '.' or end of path, found {}", p.found()))),
    }
}

fn check_length(input: &str, what: &str) -> Result<(), FilterError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(FilterError::new(format!(
            "invalid {what}: too long ({} bytes; the limit is {MAX_INPUT_BYTES})",
            input.len()
        )));
    }
    Ok(())
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character (always on a char boundary).
    pos: usize,
    depth: usize,
    in_value_filter: bool,
    what: &'static str,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Characters accepted in a `urn:…:attr.sub` token (RFC 8141 characters minus the
/// ones that are punctuation in the filter grammar).
fn is_urn_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'%' | b'~' | b'/')
}

fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic()) && bytes.all(is_name_byte)
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, what: &'static str) -> Self {
        Parser { src, pos: 0, depth: 0, in_value_filter: false, what }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// The run of name characters at the current position (possibly empty).
    fn word(&self) -> &'a str {
        let rest = self.rest();
        let len = rest.bytes().take_while(|b| is_name_byte(*b)).count();
        rest.get(..len).unwrap_or("")
    }

    fn err(&self, msg: impl fmt::Display) -> FilterError {
        self.err_at(self.pos, msg)
    }

    fn err_at(&self, byte: usize, msg: impl fmt::Display) -> FilterError {
        let offset = self.src.get(..byte).map_or(byte, |s| s.chars().count());
        FilterError::new(format!("invalid {} at offset {offset}: {msg}", self.what))
    }

    /// A short quoted description of what is at the current position.
    fn found(&self) -> String {
        let rest = self.rest();
        let Some(first) = rest.chars().next() else {
            return "end of input".to_string();
        };
        let token: String = if first.is_ascii_alphanumeric() || matches!(first, '-' | '_') {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
                .take(24)
                .collect()
        } else {
            first.to_string()
        };
        format!("'{}'", token.escape_debug())
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let word = self.word();
        if word.eq_ignore_ascii_case(keyword) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nesting is too deep (the limit is {MAX_DEPTH} levels)")));
        }
        Ok(())
    }

    /// Consume blanks then `close`, which closes the bracket opened at byte `open`.
    fn expect_close(&mut self, close: u8, open: usize) -> Result<(), FilterError> {
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            self.depth = self.depth.saturating_sub(1);
            Ok(())
        } else {
            let open_char = if close == b')' { '(' } else { '[' };
            let open_offset = self.src.get(..open).map_or(open, |s| s.chars().count());
            Err(self.err(format!(
                "expected 'and', 'or' or '{}' to close the '{open_char}' at offset {open_offset}, found {}",
                char::from(close),
                self.found()
            )))
        }
    }

    fn parse_or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_and()?;
        loop {
            self.skip_ws();
            if !self.eat_keyword("or") {
                return Ok(left);
            }
            let right = self.parse_and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
    }

    fn parse_and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_unary()?;
        loop {
            self.skip_ws();
            if !self.eat_keyword("and") {
                return Ok(left);
            }
            let right = self.parse_unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
    }

    fn parse_unary(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.peek() == Some(b'(') {
            let open = self.pos;
            self.enter()?;
            self.pos += 1;
            let inner = self.parse_or()?;
            self.expect_close(b')', open)?;
            return Ok(inner);
        }
        let word = self.word();
        if word.eq_ignore_ascii_case("not") {
            let after = self.pos + word.len();
            let blanks = self
                .src
                .get(after..)
                .unwrap_or("")
                .bytes()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .count();
            if self.src.as_bytes().get(after + blanks) == Some(&b'(') {
                let open = after + blanks;
                self.pos = open;
                self.enter()?;
                self.pos += 1;
                let inner = self.parse_or()?;
                self.expect_close(b')', open)?;
                return Ok(Filter::Not(Box::new(inner)));
            }
        }
        self.parse_attr_exp()
    }

    /// `name` (ALPHA *nameChar) at the current position.
    fn parse_name(&mut self, expected: &str) -> Result<String, FilterError> {
        let word = self.word();
        if !is_name(word) {
            return Err(self.err(format!("expected {expected}, found {}", self.found())));
        }
        self.pos += word.len();
        Ok(word.to_string())
    }

    fn parse_attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let start = self.pos;
        let rest = self.rest();
        let is_urn = rest.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        if !is_urn {
            let name = self.parse_name("an attribute name")?;
            let mut sub = None;
            if self.peek() == Some(b'.') {
                self.pos += 1;
                sub = Some(self.parse_name("a sub-attribute name after '.'")?);
                if self.peek() == Some(b'.') {
                    return Err(self.err("an attribute path has at most one sub-attribute"));
                }
            }
            if self.peek() == Some(b':') {
                return Err(self.err_at(start, "a schema URN prefix must start with 'urn:'"));
            }
            return Ok(AttrPath { uri: None, name, sub });
        }
        let len = rest.bytes().take_while(|b| is_urn_byte(*b)).count();
        let token = rest.get(..len).unwrap_or("");
        // "urn:" is in the token, so there is a ':'.
        let colon = token.rfind(':').unwrap_or(3);
        let uri = token.get(..colon).unwrap_or("");
        let tail = token.get(colon + 1..).unwrap_or("");
        if uri.len() <= 4 {
            return Err(self.err_at(
                start,
                "expected a schema URN such as 'urn:ietf:params:scim:schemas:core:2.0:User:' before the attribute name",
            ));
        }
        let (name, sub) = match tail.split_once('.') {
            None => (tail, None),
            Some((name, sub)) => (name, Some(sub)),
        };
        let tail_at = start + colon + 1;
        if !is_name(name) {
            let shown: String = tail.chars().take(24).collect();
            return Err(self.err_at(
                tail_at,
                format!("expected an attribute name after the schema URN, found '{}'", shown.escape_debug()),
            ));
        }
        if let Some(sub) = sub {
            if !is_name(sub) {
                let msg = if sub.contains('.') {
                    "an attribute path has at most one sub-attribute".to_string()
                } else {
                    format!("expected a sub-attribute name after '.', found '{}'", sub.escape_debug())
                };
                return Err(self.err_at(tail_at + name.len() + 1, msg));
            }
        }
        self.pos += len;
        Ok(AttrPath { uri: Some(uri.to_string()), name: name.to_string(), sub: sub.map(str::to_string) })
    }

    /// `[valFilter]`, the current character being `[`.
    fn parse_value_filter(&mut self) -> Result<Filter, FilterError> {
        let open = self.pos;
        self.enter()?;
        self.pos += 1;
        self.in_value_filter = true;
        let inner = self.parse_or();
        self.in_value_filter = false;
        let inner = inner?;
        self.expect_close(b']', open)?;
        Ok(inner)
    }

    fn parse_attr_exp(&mut self) -> Result<Filter, FilterError> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b) if b.is_ascii_alphabetic()) {
            return Err(self.err(format!("expected an attribute name, '(' or 'not (', found {}", self.found())));
        }
        let path = self.parse_attr_path()?;
        self.skip_ws();
        if self.peek() == Some(b'[') {
            if self.in_value_filter {
                return Err(self.err("value filters '[...]' cannot be nested"));
            }
            if path.sub.is_some() {
                return Err(self.err("a value filter '[...]' must follow an attribute name without a sub-attribute"));
            }
            let inner = self.parse_value_filter()?;
            return Ok(Filter::ValuePath { path, filter: Box::new(inner) });
        }
        if self.in_value_filter && (path.uri.is_some() || path.sub.is_some()) {
            return Err(self.err_at(
                start,
                "inside '[...]' only sub-attribute names are allowed (write 'type', not 'emails.type')",
            ));
        }
        let op_word = self.word();
        if op_word.eq_ignore_ascii_case("pr") {
            self.pos += op_word.len();
            self.skip_ws();
            let next = self.word();
            let takes_value = matches!(self.peek(), Some(b'"' | b'\'' | b'-' | b'0'..=b'9'))
                || ["true", "false", "null"].iter().any(|lit| next.eq_ignore_ascii_case(lit));
            if takes_value {
                return Err(self.err(format!("'pr' takes no value, found {}", self.found())));
            }
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::from_keyword(op_word) else {
            let hint = if path.uri.is_none() && path.sub.is_none() && path.name.eq_ignore_ascii_case("not") {
                " ('not' must be followed by '(')"
            } else {
                ""
            };
            let what = if op_word.is_empty() { "expected" } else { "unknown operator; expected" };
            return Err(self.err(format!(
                "{what} an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after '{path}', found {}{hint}",
                self.found()
            )));
        };
        self.pos += op_word.len();
        self.skip_ws();
        let value = self.parse_value(op)?;
        Ok(Filter::Compare { path, op, value })
    }

    fn parse_value(&mut self, op: CompareOp) -> Result<CompValue, FilterError> {
        match self.peek() {
            Some(b'"') => Ok(CompValue::Str(self.parse_string()?)),
            Some(b'-' | b'0'..=b'9') => Ok(CompValue::Num(self.parse_number()?)),
            Some(b'\'') => Err(self.err("strings must be in double quotes")),
            Some(b) if b.is_ascii_alphabetic() => {
                let word = self.word();
                let value = if word.eq_ignore_ascii_case("true") {
                    CompValue::Bool(true)
                } else if word.eq_ignore_ascii_case("false") {
                    CompValue::Bool(false)
                } else if word.eq_ignore_ascii_case("null") {
                    CompValue::Null
                } else {
                    return Err(self.err(format!(
                        "expected a value after '{op}' (a \"string\", a number, true, false or null), found {}; strings must be in double quotes",
                        self.found()
                    )));
                };
                self.pos += word.len();
                Ok(value)
            }
            _ => Err(self.err(format!(
                "expected a value after '{op}' (a \"string\", a number, true, false or null), found {}",
                self.found()
            ))),
        }
    }

    /// A JSON string, the current character being `"`.
    fn parse_string(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let body = self.pos + 1;
        let mut chars = self.src.get(body..).unwrap_or("").char_indices();
        let mut out = String::new();
        let unterminated = || self.err_at(start, "unterminated string (missing closing '\"')");
        loop {
            let Some((i, c)) = chars.next() else {
                return Err(unterminated());
            };
            match c {
                '"' => {
                    self.pos = body + i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else {
                        return Err(unterminated());
                    };
                    let decoded = match e {
                        '"' => '"',
                        '\\' => '\\',
                        '/' => '/',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'u' => self.unicode_escape(&mut chars, body + i)?,
                        other => {
                            return Err(
                                self.err_at(body + i, format!("invalid escape '\\{}' in string", other.escape_debug()))
                            )
                        }
                    };
                    out.push(decoded);
                }
                c if u32::from(c) < 0x20 => {
                    return Err(self.err_at(body + i, "control character in string (use an escape such as \\n)"));
                }
                c => out.push(c),
            }
        }
    }

    /// The rest of a `\uXXXX` escape (the `\u` consumed; `at` is the byte of the `\`),
    /// with a following `\uXXXX` low surrogate when the first is a high surrogate.
    fn unicode_escape(&self, chars: &mut std::str::CharIndices<'_>, at: usize) -> Result<char, FilterError> {
        let hex4 = |chars: &mut std::str::CharIndices<'_>| -> Option<u32> {
            let mut v = 0u32;
            for _ in 0..4 {
                let (_, c) = chars.next()?;
                v = v * 16 + c.to_digit(16)?;
            }
            Some(v)
        };
        let bad = || self.err_at(at, "invalid \\u escape in string (expected 4 hex digits)");
        let hi = hex4(chars).ok_or_else(bad)?;
        let code = match hi {
            0xD800..=0xDBFF => {
                let lone = || self.err_at(at, "invalid \\u escape in string: unpaired surrogate");
                match (chars.next(), chars.next()) {
                    (Some((_, '\\')), Some((_, 'u'))) => {}
                    _ => return Err(lone()),
                }
                let lo = hex4(chars).ok_or_else(bad)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(lone());
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(self.err_at(at, "invalid \\u escape in string: unpaired surrogate"));
            }
            v => v,
        };
        char::from_u32(code).ok_or_else(bad)
    }

    /// A JSON number at the current position.
    fn parse_number(&mut self) -> Result<f64, FilterError> {
        let bytes = self.src.as_bytes();
        let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
        let start = self.pos;
        let bad = |at: usize| self.err_at(at, "invalid number (expected a JSON number such as 42, -1.5 or 2e10)");
        let mut i = start;
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while digit(i) {
                    i += 1;
                }
            }
            _ => return Err(bad(start)),
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if !digit(i) {
                return Err(bad(start));
            }
            while digit(i) {
                i += 1;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digit(i) {
                return Err(bad(start));
            }
            while digit(i) {
                i += 1;
            }
        }
        if matches!(bytes.get(i), Some(b) if is_name_byte(*b) || *b == b'.') {
            return Err(bad(start));
        }
        let value: f64 = self.src.get(start..i).and_then(|text| text.parse().ok()).ok_or_else(|| bad(start))?;
        if !value.is_finite() {
            return Err(self.err_at(start, "number out of range"));
        }
        self.pos = i;
        Ok(value)
    }
}

// ---------------------------------------------------------------------------
// SQL compilation
// ---------------------------------------------------------------------------

/// What a column holds, which decides the allowed operators and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text {
        case_exact: bool,
    },
    Boolean,
    /// seconds since the epoch, compared with RFC 3339 dateTime values
    UnixTime,
    Number,
}

/// A column (or any SQL expression) that an attribute maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// An SQL expression such as `p.email` or `a.login_id`; inserted into the SQL as is.
    pub sql: String,
    pub kind: ColumnKind,
}

/// A value to bind to a `$N` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

/// Compile `filter` into an SQL boolean expression and its parameters.
///
/// `resolve` maps an attribute path (already made absolute: for a ValuePath,
/// `emails[type eq "work"]` resolves `emails.type`) to a column, or None when the
/// attribute is unknown/unsupported. Placeholders are `$N` numbered from `first_param`,
/// and the returned parameters are in placeholder order. See the module documentation
/// for the semantics.
///
/// # Errors
/// A [`FilterError`] (the client's `invalidFilter`) when an operator or value does not
/// fit the attribute's column kind, e.g. `co` on a boolean or a string against a number.
pub fn to_sql(
    filter: &Filter,
    resolve: &dyn Fn(&AttrPath) -> Option<Column>,
    first_param: usize,
) -> Result<(String, Vec<SqlParam>), FilterError> {
    let mut compiler = SqlGen { resolve, params: Vec::new(), next: first_param, depth: 0 };
    let sql = compiler.filter(filter, None)?;
    Ok((sql, compiler.params))
}

struct SqlGen<'r> {
    resolve: &'r dyn Fn(&AttrPath) -> Option<Column>,
    params: Vec<SqlParam>,
    next: usize,
    depth: usize,
}

const FALSE_SQL: &str = "(1=0)";
const TRUE_SQL: &str = "(1=1)";

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text { .. } => "a string",
        ColumnKind::Boolean => "a boolean",
        ColumnKind::UnixTime => "a dateTime",
        ColumnKind::Number => "a number",
    }
}

fn value_name(value: &CompValue) -> &'static str {
    match value {
        CompValue::Str(_) => "a string",
        CompValue::Num(_) => "a number",
        CompValue::Bool(_) => "a boolean",
        CompValue::Null => "null",
    }
}

fn sql_cmp(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "<>",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        // Co/Sw/Ew never reach here: they are compiled separately.
        CompareOp::Le | CompareOp::Co | CompareOp::Sw | CompareOp::Ew => "<=",
    }
}

impl SqlGen<'_> {
    fn bind(&mut self, param: SqlParam) -> String {
        let placeholder = format!("${}", self.next);
        self.next += 1;
        self.params.push(param);
        placeholder
    }

    fn filter(&mut self, filter: &Filter, outer: Option<&AttrPath>) -> Result<String, FilterError> {
        self.depth += 1;
        if self.depth > MAX_SQL_DEPTH {
            return Err(FilterError::new("invalid filter: nested too deeply"));
        }
        let sql = match filter {
            Filter::And(l, r) => format!("({} AND {})", self.filter(l, outer)?, self.filter(r, outer)?),
            Filter::Or(l, r) => format!("({} OR {})", self.filter(l, outer)?, self.filter(r, outer)?),
            Filter::Not(inner) => format!("NOT {}", self.filter(inner, outer)?),
            Filter::ValuePath { path, filter } => {
                if outer.is_some() {
                    return Err(FilterError::new("invalid filter: value filters '[...]' cannot be nested"));
                }
                if path.sub.is_some() {
                    return Err(FilterError::new(format!(
                        "invalid filter: a value filter cannot follow '{path}', which has a sub-attribute"
                    )));
                }
                self.filter(filter, Some(path))?
            }
            Filter::Present(path) => {
                let path = absolute(outer, path)?;
                match (self.resolve)(&path) {
                    None => FALSE_SQL.to_string(),
                    Some(col) => present_sql(&col),
                }
            }
            Filter::Compare { path, op, value } => {
                let path = absolute(outer, path)?;
                self.compare(&path, *op, value)?
            }
        };
        self.depth -= 1;
        Ok(sql)
    }

    fn compare(&mut self, path: &AttrPath, op: CompareOp, value: &CompValue) -> Result<String, FilterError> {
        // Operator/value combinations that are wrong whatever the attribute's type.
        match (op, value) {
            (CompareOp::Eq | CompareOp::Ne, _)
            | (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, CompValue::Str(_))
            | (CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le, CompValue::Str(_) | CompValue::Num(_)) => {
            }
            (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, _) => {
                return Err(FilterError::new(format!(
                    "invalid filter: '{path} {op}' needs a string value, not {}",
                    value_name(value)
                )));
            }
            _ => {
                return Err(FilterError::new(format!(
                    "invalid filter: '{path} {op}' cannot compare with {}",
                    value_name(value)
                )));
            }
        }
        let Some(col) = (self.resolve)(path) else {
            // An unknown attribute has no value.
            return Ok(match (op, value) {
                (CompareOp::Eq, CompValue::Null) => TRUE_SQL,
                (CompareOp::Ne, CompValue::Null) => FALSE_SQL,
                (CompareOp::Ne, _) => TRUE_SQL,
                _ => FALSE_SQL,
            }
            .to_string());
        };
        let c = col.sql.as_str();
        if *value == CompValue::Null {
            return Ok(if op == CompareOp::Eq { absent_sql(&col) } else { present_sql(&col) });
        }
        let mismatch = || {
            FilterError::new(format!(
                "invalid filter: '{path}' is {} and cannot be compared with {}",
                kind_name(col.kind),
                value_name(value)
            ))
        };
        match col.kind {
            ColumnKind::Text { case_exact } => {
                let CompValue::Str(s) = value else {
                    return Err(mismatch());
                };
                if case_exact {
                    Ok(self.text_exact(c, op, s))
                } else {
                    Ok(self.text_folded(c, op, s))
                }
            }
            ColumnKind::Boolean => {
                let CompValue::Bool(b) = value else {
                    return Err(mismatch());
                };
                if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                    return Err(FilterError::new(format!(
                        "invalid filter: '{path}' is a boolean; only eq and ne are allowed"
                    )));
                }
                let p = self.bind(SqlParam::Bool(*b));
                Ok(ordered(c, c, op, &p))
            }
            ColumnKind::Number => {
                let CompValue::Num(n) = value else {
                    return Err(mismatch());
                };
                let param = if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 {
                    // Exact: an integral value within ±2^53.
                    #[allow(clippy::cast_possible_truncation)]
                    let int = *n as i64;
                    SqlParam::Int(int)
                } else {
                    SqlParam::Real(*n)
                };
                let p = self.bind(param);
                Ok(ordered(c, c, op, &p))
            }
            ColumnKind::UnixTime => {
                let CompValue::Str(s) = value else {
                    return Err(mismatch());
                };
                if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
                    return Err(FilterError::new(format!(
                        "invalid filter: '{path}' is a dateTime; '{op}' is not allowed (use eq, ne, gt, ge, lt or le)"
                    )));
                }
                let secs = parse_datetime(s).ok_or_else(|| {
                    FilterError::new(format!(
                        "invalid filter: '{path}' is a dateTime; expected a value such as \"2011-05-13T04:42:34Z\", found \"{}\"",
                        s.chars().take(40).collect::<String>().escape_debug()
                    ))
                })?;
                let p = self.bind(SqlParam::Int(secs));
                Ok(ordered(c, c, op, &p))
            }
        }
    }

    fn text_folded(&mut self, c: &str, op: CompareOp, s: &str) -> String {
        let lowered = s.to_ascii_lowercase();
        let pattern = match op {
            CompareOp::Co => Some(format!("%{}%", like_escape(&lowered))),
            CompareOp::Sw => Some(format!("{}%", like_escape(&lowered))),
            CompareOp::Ew => Some(format!("%{}", like_escape(&lowered))),
            _ => None,
        };
        let left = format!("LOWER({c})");
        match pattern {
            Some(pattern) => {
                let p = self.bind(SqlParam::Text(pattern));
                format!("({c} IS NOT NULL AND {left} LIKE LOWER({p}) ESCAPE '\\')")
            }
            None => {
                let p = self.bind(SqlParam::Text(lowered));
                ordered(c, &left, op, &format!("LOWER({p})"))
            }
        }
    }

    fn text_exact(&mut self, c: &str, op: CompareOp, s: &str) -> String {
        match op {
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew if s.is_empty() => format!("({c} IS NOT NULL)"),
            CompareOp::Sw => {
                let a = self.bind(SqlParam::Text(s.to_string()));
                let b = self.bind(SqlParam::Text(s.to_string()));
                format!("({c} IS NOT NULL AND SUBSTR({c}, 1, LENGTH({a})) = {b})")
            }
            CompareOp::Ew => {
                let a = self.bind(SqlParam::Text(s.to_string()));
                let b = self.bind(SqlParam::Text(s.to_string()));
                let d = self.bind(SqlParam::Text(s.to_string()));
                format!(
                    "({c} IS NOT NULL AND LENGTH({c}) >= LENGTH({a}) AND SUBSTR({c}, LENGTH({c}) - LENGTH({b}) + 1) = {d})"
                )
            }
            CompareOp::Co => {
                let a = self.bind(SqlParam::Text(s.to_string()));
                format!("({c} IS NOT NULL AND REPLACE({c}, {a}, '') <> {c})")
            }
            _ => {
                let p = self.bind(SqlParam::Text(s.to_string()));
                ordered(c, c, op, &p)
            }
        }
    }
}

/// A definite (never NULL) comparison of `left` (an expression over column `c`) with `right`.
fn ordered(c: &str, left: &str, op: CompareOp, right: &str) -> String {
    if op == CompareOp::Ne {
        format!("({c} IS NULL OR {left} <> {right})")
    } else {
        format!("({c} IS NOT NULL AND {left} {} {right})", sql_cmp(op))
    }
}

fn present_sql(col: &Column) -> String {
    let c = &col.sql;
    match col.kind {
        ColumnKind::Text { .. } => format!("({c} IS NOT NULL AND {c} <> '')"),
        _ => format!("({c} IS NOT NULL)"),
    }
}

fn absent_sql(col: &Column) -> String {
    let c = &col.sql;
    match col.kind {
        ColumnKind::Text { .. } => format!("({c} IS NULL OR {c} = '')"),
        _ => format!("({c} IS NULL)"),
    }
}

/// The absolute path of `path`, which is relative to `outer` inside a value filter.
fn absolute(outer: Option<&AttrPath>, path: &AttrPath) -> Result<AttrPath, FilterError> {
    let Some(outer) = outer else {
        return Ok(path.clone());
    };
    if path.uri.is_some() || path.sub.is_some() {
        return Err(FilterError::new(format!(
            "invalid filter: inside '{}[...]' only sub-attribute names are allowed, found '{path}'",
            outer
        )));
    }
    Ok(AttrPath { uri: outer.uri.clone(), name: outer.name.clone(), sub: Some(path.name.clone()) })
}

// ---------------------------------------------------------------------------
// RFC 3339 dateTime
// ---------------------------------------------------------------------------

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parse an RFC 3339 / xsd:dateTime value into seconds since the epoch, truncating any
/// fraction of a second. `YYYY-MM-DDTHH:MM:SS[.frac][Z|±HH:MM]`; `t`/`z` may be lower
/// case; no zone means UTC; second 60 (leap second) is accepted.
fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, chars: &[u8]| b.get(i).is_some_and(|c| chars.contains(c));
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let hour = num(11, 2)?;
    let minute = num(14, 2)?;
    let second = num(17, 2)?;
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let digits = b.get(i..).unwrap_or(&[]).iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    let offset = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let oh = num(i + 1, 2)?;
            let om = num(i + 4, 2)?;
            if !at(i + 3, b":") || oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        Some(_) => return None,
    };
    if i != b.len()
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    // ----- helpers -----

    fn p(name: &str) -> AttrPath {
        AttrPath::new(name)
    }
    fn ps(name: &str, sub: &str) -> AttrPath {
        AttrPath::with_sub(name, sub)
    }
    fn s(v: &str) -> CompValue {
        CompValue::Str(v.to_string())
    }
    fn cmp(path: AttrPath, op: CompareOp, value: CompValue) -> Filter {
        Filter::Compare { path, op, value }
    }
    fn pr(path: AttrPath) -> Filter {
        Filter::Present(path)
    }
    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }
    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }
    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }
    fn vp(path: AttrPath, f: Filter) -> Filter {
        Filter::ValuePath { path, filter: Box::new(f) }
    }
    fn num(v: f64) -> CompValue {
        CompValue::Num(v)
    }

    /// Parse, and check that the canonical text parses back to the same tree.
    fn ok(input: &str) -> Filter {
        let f = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        let text = f.to_string();
        assert_eq!(parse(&text).as_ref(), Ok(&f), "round trip of {input:?} via {text:?}");
        f
    }
    fn err(input: &str) -> String {
        match parse(input) {
            Ok(f) => panic!("{input:?} parsed as {f:?}"),
            Err(e) => e.message,
        }
    }
    fn assert_err(input: &str, parts: &[&str]) {
        let msg = err(input);
        for part in parts {
            assert!(msg.contains(part), "error for {input:?} is {msg:?}, expected it to contain {part:?}");
        }
    }

    use CompareOp::*;

    // ----- RFC 7644 §3.4.2.2 examples -----

    #[test]
    fn rfc_examples() {
        assert_eq!(ok(r#"userName eq "bjensen""#), cmp(p("userName"), Eq, s("bjensen")));
        assert_eq!(ok(r#"name.familyName co "O'Malley""#), cmp(ps("name", "familyName"), Co, s("O'Malley")));
        assert_eq!(ok(r#"userName sw "J""#), cmp(p("userName"), Sw, s("J")));
        assert_eq!(
            ok(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#),
            cmp(
                AttrPath {
                    uri: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
                    name: "userName".into(),
                    sub: None
                },
                Sw,
                s("J")
            )
        );
        assert_eq!(ok("title pr"), pr(p("title")));
        for (text, op) in [("gt", Gt), ("ge", Ge), ("lt", Lt), ("le", Le)] {
            assert_eq!(
                ok(&format!(r#"meta.lastModified {text} "2011-05-13T04:42:34Z""#)),
                cmp(ps("meta", "lastModified"), op, s("2011-05-13T04:42:34Z"))
            );
        }
        assert_eq!(
            ok(r#"title pr and userType eq "Employee""#),
            and(pr(p("title")), cmp(p("userType"), Eq, s("Employee")))
        );
        assert_eq!(ok(r#"title pr or userType eq "Intern""#), or(pr(p("title")), cmp(p("userType"), Eq, s("Intern"))));
        assert_eq!(
            ok(r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#),
            cmp(p("schemas"), Eq, s("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"))
        );
        let emails_or = or(cmp(p("emails"), Co, s("example.com")), cmp(ps("emails", "value"), Co, s("example.org")));
        assert_eq!(
            ok(r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#),
            and(cmp(p("userType"), Eq, s("Employee")), emails_or.clone())
        );
        assert_eq!(
            ok(r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#),
            and(cmp(p("userType"), Ne, s("Employee")), not(emails_or))
        );
        assert_eq!(
            ok(r#"userType eq "Employee" and (emails.type eq "work")"#),
            and(cmp(p("userType"), Eq, s("Employee")), cmp(ps("emails", "type"), Eq, s("work")))
        );
        let work = |domain: &str| and(cmp(p("type"), Eq, s("work")), cmp(p("value"), Co, s(domain)));
        assert_eq!(
            ok(r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#),
            and(cmp(p("userType"), Eq, s("Employee")), vp(p("emails"), work("@example.com")))
        );
        assert_eq!(
            ok(r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#),
            or(
                vp(p("emails"), work("@example.com")),
                vp(p("ims"), and(cmp(p("type"), Eq, s("xmpp")), cmp(p("value"), Co, s("@foo.com"))))
            )
        );
    }

    #[test]
    fn urn_paths() {
        let f = ok(r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "x""#);
        assert_eq!(
            f,
            cmp(
                AttrPath {
                    uri: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
                    name: "name".into(),
                    sub: Some("familyName".into())
                },
                Eq,
                s("x")
            )
        );
        let f = ok(r#"URN:x:y:attr pr"#);
        assert_eq!(f, pr(AttrPath { uri: Some("URN:x:y".into()), name: "attr".into(), sub: None }));
        // A URN-prefixed value path.
        let f = ok(r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"]"#);
        assert!(matches!(f, Filter::ValuePath { ref path, .. } if path.uri.is_some() && path.name == "emails"));
        // An attribute may be called "urn" or "not".
        assert_eq!(ok("urn pr"), pr(p("urn")));
        assert_eq!(ok("urn.x pr"), pr(ps("urn", "x")));
        assert_eq!(ok("not pr"), pr(p("not")));
        assert_eq!(ok("not eq 1"), cmp(p("not"), Eq, num(1.0)));
        assert_eq!(ok("a pr and not[x pr]"), and(pr(p("a")), vp(p("not"), pr(p("x")))));
    }

    #[test]
    fn precedence_and_grouping() {
        let a = cmp(p("a"), Eq, num(1.0));
        let b = cmp(p("b"), Eq, num(2.0));
        let c = cmp(p("c"), Eq, num(3.0));
        assert_eq!(ok("a eq 1 or b eq 2 and c eq 3"), or(a.clone(), and(b.clone(), c.clone())));
        assert_eq!(ok("a eq 1 and b eq 2 or c eq 3"), or(and(a.clone(), b.clone()), c.clone()));
        assert_eq!(ok("(a eq 1 or b eq 2) and c eq 3"), and(or(a.clone(), b.clone()), c.clone()));
        assert_eq!(ok("a eq 1 and b eq 2 and c eq 3"), and(and(a.clone(), b.clone()), c.clone()));
        assert_eq!(ok("a eq 1 and (b eq 2 and c eq 3)"), and(a.clone(), and(b.clone(), c.clone())));
        assert_eq!(ok("a eq 1 or b eq 2 or c eq 3"), or(or(a.clone(), b.clone()), c.clone()));
        assert_eq!(ok("not (a eq 1) and b eq 2"), and(not(a.clone()), b.clone()));
        assert_eq!(ok("not (a eq 1 or b eq 2)"), not(or(a.clone(), b.clone())));
        assert_eq!(ok("not(not(a eq 1))"), not(not(a.clone())));
        assert_eq!(ok("((((a eq 1))))"), a.clone());
        // Blanks are lenient.
        assert_eq!(ok("  a   eq\t1   or\n b eq 2  "), or(a.clone(), b.clone()));
        assert_eq!(ok("(a eq 1)or(b eq 2)"), or(a, b));
        assert_eq!(ok(r#"a eq"x""#), cmp(p("a"), Eq, s("x")));
        // Canonical text.
        assert_eq!(
            ok("(a eq 1 or b eq 2) and (c eq 3 and a pr)").to_string(),
            "(a eq 1 or b eq 2) and (c eq 3 and a pr)"
        );
        assert_eq!(ok(r#"NOT ( a Eq "x" )"#).to_string(), r#"not (a eq "x")"#);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(ok(r#"userName EQ "x""#), cmp(p("userName"), Eq, s("x")));
        for (kw, op) in
            [("Eq", Eq), ("NE", Ne), ("cO", Co), ("SW", Sw), ("Ew", Ew), ("GT", Gt), ("gE", Ge), ("LT", Lt), ("Le", Le)]
        {
            assert_eq!(ok(&format!("a {kw} 1")), cmp(p("a"), op, num(1.0)));
        }
        assert_eq!(ok("a PR AND b Pr"), and(pr(p("a")), pr(p("b"))));
        assert_eq!(ok("a pr OR b pr"), or(pr(p("a")), pr(p("b"))));
        assert_eq!(ok("NoT (a pr)"), not(pr(p("a"))));
        assert_eq!(ok("a eq TRUE"), cmp(p("a"), Eq, CompValue::Bool(true)));
        assert_eq!(ok("a eq False"), cmp(p("a"), Eq, CompValue::Bool(false)));
        assert_eq!(ok("a ne NULL"), cmp(p("a"), Ne, CompValue::Null));
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            ok(r#"a eq "q\"b\\s\/n\n\t\r\b\f\u00e9\u00C9\ud83d\ude00""#),
            cmp(p("a"), Eq, s("q\"b\\s/n\n\t\r\u{8}\u{c}éÉ😀"))
        );
        assert_eq!(ok(r#"a eq "Émile 日本 😀""#), cmp(p("a"), Eq, s("Émile 日本 😀")));
        assert_eq!(ok(r#"a eq """#), cmp(p("a"), Eq, s("")));
        assert_eq!(ok(r#"a eq "(a or b) ] [""#), cmp(p("a"), Eq, s("(a or b) ] [")));
        assert_err(r#"a eq "\x""#, &["invalid escape '\\x'", "offset 6"]);
        assert_err(r#"a eq "\u12""#, &["4 hex digits"]);
        assert_err(r#"a eq "\u12g4""#, &["4 hex digits"]);
        assert_err(r#"a eq "\ud800""#, &["unpaired surrogate"]);
        assert_err(r#"a eq "\ud800\u0041""#, &["unpaired surrogate"]);
        assert_err(r#"a eq "\udc00""#, &["unpaired surrogate"]);
        assert_err("a eq \"x\ny\"", &["control character"]);
        assert_err(r#"a eq "x\"#, &["unterminated string"]);
        // Agrees with serde_json on a sample.
        let json = serde_json::to_string("tab\t \u{1} quote\" \u{10FFFF}").unwrap();
        assert_eq!(ok(&format!("a eq {json}")), cmp(p("a"), Eq, s("tab\t \u{1} quote\" \u{10FFFF}")));
    }

    #[test]
    fn numbers() {
        assert_eq!(ok("a eq 42"), cmp(p("a"), Eq, num(42.0)));
        assert_eq!(ok("a eq -1.5"), cmp(p("a"), Eq, num(-1.5)));
        assert_eq!(ok("a eq 2e10"), cmp(p("a"), Eq, num(2e10)));
        assert_eq!(ok("a eq 1E-3"), cmp(p("a"), Eq, num(1e-3)));
        assert_eq!(ok("a eq 0"), cmp(p("a"), Eq, num(0.0)));
        assert_eq!(ok("a eq 0.25 and b pr"), and(cmp(p("a"), Eq, num(0.25)), pr(p("b"))));
        assert_eq!(ok("(a eq 7)"), cmp(p("a"), Eq, num(7.0)));
        for bad in ["a eq 01", "a eq 1.", "a eq .5", "a eq -", "a eq 1x", "a eq 1e", "a eq 1.2.3", "a eq +1", "a eq -a"]
        {
            let msg = err(bad);
            assert!(msg.contains("number") || msg.contains("expected a value"), "{bad}: {msg}");
        }
        assert_err("a eq 1e400", &["out of range", "offset 5"]);
    }

    #[test]
    fn error_messages() {
        assert_err(r#"userName eq "bjensen"#, &["unterminated string", "offset 12"]);
        assert_err("userName eq", &["expected a value after 'eq'", "end of input", "offset 11"]);
        assert_err("userName eq   ", &["expected a value", "end of input"]);
        assert_err(r#"userName like "x""#, &["unknown operator", "'like'", "offset 9", "eq, ne, co"]);
        assert_err("userName", &["expected an operator", "end of input"]);
        assert_err(r#"userName eq "x" foo"#, &["expected 'and', 'or' or end of input", "'foo'", "offset 16"]);
        assert_err(r#"title pr "x""#, &["'pr' takes no value", "offset 9"]);
        assert_err("title pr 5", &["'pr' takes no value"]);
        assert_err("title pr true", &["'pr' takes no value"]);
        assert_err("", &["empty"]);
        assert_err("   ", &["empty"]);
        assert_err("(a pr", &["')' to close the '(' at offset 0", "end of input"]);
        assert_err("a pr)", &["unbalanced ')'", "offset 4"]);
        assert_err("a pr and", &["expected an attribute name", "end of input"]);
        // "or" may be an attribute name, so the second "or" is read as one.
        assert_err("a pr or or b pr", &["offset 11", "after 'or'", "found 'b'"]);
        assert_err("and", &["expected an operator"]);
        assert_err("a eq 'x'", &["double quotes"]);
        assert_err("a eq bjensen", &["expected a value", "'bjensen'", "double quotes"]);
        assert_err("not a pr", &["'not' must be followed by '('"]);
        assert_err("not (a pr", &["to close the '(' at offset 4"]);
        assert_err("emails[type eq \"x\"", &["']' to close the '[' at offset 6"]);
        assert_err("emails[x[y pr]]", &["cannot be nested"]);
        assert_err("emails[emails.type eq \"x\"]", &["only sub-attribute names"]);
        assert_err("emails[urn:a:b:type eq \"x\"]", &["only sub-attribute names"]);
        assert_err("name.given[x pr]", &["without a sub-attribute"]);
        assert_err("emails[]", &["expected an attribute name", "']'"]);
        assert_err("name.given.x pr", &["at most one sub-attribute"]);
        assert_err("urn:a:name.given.x pr", &["at most one sub-attribute"]);
        assert_err("foo:bar pr", &["must start with 'urn:'"]);
        assert_err("urn:foo pr", &["schema URN"]);
        assert_err("urn:a:b:1x pr", &["expected an attribute name after the schema URN", "'1x'"]);
        assert_err("1a pr", &["expected an attribute name"]);
        assert_err("a. pr", &["sub-attribute name after '.'"]);
        assert_err("_a pr", &["expected an attribute name"]);
        assert_err("a eq 1 )", &["unbalanced ')'"]);
        assert_err("a eq 1 ]", &["expected 'and', 'or' or end of input", "']'"]);
        // Offsets count characters, not bytes.
        assert_err(r#"a eq "é" b"#, &["offset 9"]);
        // Control characters are shown escaped.
        assert_err("a \u{1}", &["'\\u{1}'"]);
        // FilterError is an std::error::Error whose Display is the message.
        let e: Box<dyn std::error::Error> = Box::new(parse("a").unwrap_err());
        assert!(e.to_string().starts_with("invalid filter at offset 1"));
    }

    #[test]
    fn limits() {
        let nested = |n: usize| format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(ok(&nested(MAX_DEPTH)), pr(p("a")));
        assert_err(&nested(MAX_DEPTH + 1), &["nesting is too deep", "32"]);
        let nots = |n: usize| format!("{}a pr{}", "not (".repeat(n), ")".repeat(n));
        assert!(parse(&nots(MAX_DEPTH)).is_ok());
        assert_err(&nots(MAX_DEPTH + 1), &["nesting is too deep"]);
        // A value filter counts as one level.
        let in_brackets = |n: usize| format!("{}e[x pr]{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&in_brackets(MAX_DEPTH - 1)).is_ok());
        assert_err(&in_brackets(MAX_DEPTH), &["nesting is too deep"]);
        // Unclosed deep nesting fails on depth, not on the stack.
        assert_err(&"(".repeat(4000), &["nesting is too deep"]);
        // Length.
        let long = format!("a eq \"{}\"", "x".repeat(MAX_INPUT_BYTES));
        assert_err(&long, &["too long", "4096"]);
        let exactly = format!("a eq \"{}\"", "x".repeat(MAX_INPUT_BYTES - 7));
        assert_eq!(exactly.len(), MAX_INPUT_BYTES);
        assert!(parse(&exactly).is_ok());
        assert!(parse_patch_path(&format!("a[{}]", "b pr and ".repeat(600))).unwrap_err().message.contains("too long"));
    }

    #[test]
    fn worst_case_inputs_are_fast_and_compile() {
        let chain = |link: &str| {
            let mut s = String::from("a pr");
            while s.len() + link.len() <= MAX_INPUT_BYTES {
                s.push_str(link);
            }
            s
        };
        let inputs = [
            chain(" or a pr"),
            chain(" and a pr"),
            chain(" or(a pr)"),
            "(".repeat(MAX_INPUT_BYTES),
            "not (".repeat(MAX_INPUT_BYTES / 5),
            "e[".repeat(MAX_INPUT_BYTES / 2),
            format!("a eq \"{}\"", "\\ud83d\\ude00".repeat(340)),
            format!("a eq \"{}", "\\\"".repeat(2040)),
            format!("urn:{}x pr", "a:".repeat(2040)),
            format!("a eq {}", "9".repeat(4000)),
            " ".repeat(MAX_INPUT_BYTES),
        ];
        for input in &inputs {
            assert!(input.len() <= MAX_INPUT_BYTES, "{} bytes: {:?}", input.len(), input.get(..20));
            let start = Instant::now();
            let parsed = parse(input);
            let _ = parse_patch_path(input);
            if let Ok(f) = &parsed {
                let text = f.to_string();
                assert_eq!(parse(&text).as_ref(), Ok(f));
                let (sql, params) = to_sql(f, &resolver, 1).unwrap();
                assert!(!sql.is_empty() && params.len() < 1000);
            }
            assert!(start.elapsed() < Duration::from_secs(1), "slow on {:?}", input.get(..40));
        }
        // The 4 KiB chains are left-deep trees a few hundred levels deep: fine for
        // Display, to_sql, PartialEq and Drop.
        assert!(parse(&chain(" or a pr")).is_ok());
    }

    // ----- PATCH paths -----

    #[test]
    fn patch_paths() {
        let pp = parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
        assert_eq!(
            pp,
            PatchPath {
                attr: p("members"),
                filter: Some(cmp(p("value"), Eq, s("2819c223-7f76-453a-919d-413861904646"))),
                sub_after_filter: None
            }
        );
        let pp = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            pp,
            PatchPath {
                attr: p("emails"),
                filter: Some(cmp(p("type"), Eq, s("work"))),
                sub_after_filter: Some("value".into())
            }
        );
        assert_eq!(
            parse_patch_path("name.familyName").unwrap(),
            PatchPath { attr: ps("name", "familyName"), filter: None, sub_after_filter: None }
        );
        let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        assert_eq!(
            parse_patch_path(&format!("{enterprise}:employeeNumber")).unwrap(),
            PatchPath {
                attr: AttrPath { uri: Some(enterprise.into()), name: "employeeNumber".into(), sub: None },
                filter: None,
                sub_after_filter: None
            }
        );
        assert_eq!(
            parse_patch_path(&format!("{enterprise}:manager.value")).unwrap(),
            PatchPath {
                attr: AttrPath { uri: Some(enterprise.into()), name: "manager".into(), sub: Some("value".into()) },
                filter: None,
                sub_after_filter: None
            }
        );
        let pp = parse_patch_path(r#"addresses[type eq "work" and primary eq true].streetAddress"#).unwrap();
        assert_eq!(pp.sub_after_filter.as_deref(), Some("streetAddress"));
        assert_eq!(pp.to_string(), r#"addresses[type eq "work" and primary eq true].streetAddress"#);
        assert_eq!(parse_patch_path("  userName ").unwrap().attr, p("userName"));
        assert_eq!(parse_patch_path("EMAILS[TYPE EQ \"work\"]").unwrap().attr, p("EMAILS"));

        let perr = |input: &str, parts: &[&str]| {
            let msg = parse_patch_path(input).unwrap_err().message;
            for part in parts {
                assert!(msg.contains(part), "error for {input:?} is {msg:?}, expected {part:?}");
            }
        };
        perr("", &["invalid path", "empty"]);
        perr(r#"emails[type eq "work"]value"#, &["invalid path at offset 22", "'.subAttribute'"]);
        perr(r#"emails[type eq "work"]."#, &["sub-attribute name after '].'"]);
        perr(r#"emails[type eq "work""#, &["']' to close the '[' at offset 6"]);
        perr(r#"emails.value[type eq "x"]"#, &["without a sub-attribute"]);
        perr("emails[]", &["expected an attribute name"]);
        perr("emails junk", &["expected '[', '.' or end of path", "'junk'"]);
        perr("emails[x[y pr]]", &["cannot be nested"]);
        perr(r#"emails[type eq "work"].value.x"#, &["end of path"]);
        perr("a.b.c", &["at most one sub-attribute"]);
        perr("1abc", &["expected an attribute name"]);
    }

    // ----- SQL -----

    fn resolver(path: &AttrPath) -> Option<Column> {
        let text = ColumnKind::Text { case_exact: false };
        let exact = ColumnKind::Text { case_exact: true };
        let (sql, kind) = match () {
            _ if path.is("userName", None) => ("a.login_id", text),
            _ if path.is("externalId", None) => ("a.external_id", exact),
            _ if path.is("title", None) => ("p.title", text),
            _ if path.is("userType", None) => ("p.user_type", text),
            _ if path.is("emails", None) || path.is("emails", Some("value")) => ("p.email", text),
            _ if path.is("emails", Some("type")) => ("p.email_type", text),
            _ if path.is("name", Some("familyName")) => ("p.family_name", text),
            _ if path.is("active", None) => ("a.active", ColumnKind::Boolean),
            _ if path.is("meta", Some("lastModified")) => ("a.updated_at", ColumnKind::UnixTime),
            _ if path.is("loginCount", None) => ("a.login_count", ColumnKind::Number),
            _ => return None,
        };
        Some(Column { sql: sql.into(), kind })
    }

    fn sql(filter: &str) -> (String, Vec<SqlParam>) {
        to_sql(&ok(filter), &resolver, 1).unwrap_or_else(|e| panic!("{filter}: {e}"))
    }
    fn sql_err(filter: &str) -> String {
        to_sql(&ok(filter), &resolver, 1).unwrap_err().message
    }
    fn t(v: &str) -> SqlParam {
        SqlParam::Text(v.into())
    }

    #[test]
    fn sql_text() {
        assert_eq!(
            sql(r#"userName eq "BJensen""#),
            ("(a.login_id IS NOT NULL AND LOWER(a.login_id) = LOWER($1))".into(), vec![t("bjensen")])
        );
        assert_eq!(
            sql(r#"userName ne "BJensen""#),
            ("(a.login_id IS NULL OR LOWER(a.login_id) <> LOWER($1))".into(), vec![t("bjensen")])
        );
        assert_eq!(
            sql(r#"userName gt "M""#),
            ("(a.login_id IS NOT NULL AND LOWER(a.login_id) > LOWER($1))".into(), vec![t("m")])
        );
        // Only ASCII is lower-cased in Rust (SQLite's LOWER folds only ASCII).
        assert_eq!(sql(r#"userName eq "ÉMILE""#).1, vec![t("Émile")]);
        assert_eq!(
            sql(r#"userName co "Jen""#),
            ("(a.login_id IS NOT NULL AND LOWER(a.login_id) LIKE LOWER($1) ESCAPE '\\')".into(), vec![t("%jen%")])
        );
        assert_eq!(sql(r#"userName sw "J""#).1, vec![t("j%")]);
        assert_eq!(sql(r#"userName ew "J""#).1, vec![t("%j")]);
        // LIKE metacharacters of the value are escaped.
        assert_eq!(sql(r#"userName co "50%_A\\b""#).1, vec![t("%50\\%\\_a\\\\b%")]);
        assert_eq!(sql(r#"userName sw "%""#).1, vec![t("\\%%")]);
        // Case-exact text.
        assert_eq!(
            sql(r#"externalId eq "Ab""#),
            ("(a.external_id IS NOT NULL AND a.external_id = $1)".into(), vec![t("Ab")])
        );
        assert_eq!(
            sql(r#"externalId sw "A%""#),
            (
                "(a.external_id IS NOT NULL AND SUBSTR(a.external_id, 1, LENGTH($1)) = $2)".into(),
                vec![t("A%"), t("A%")]
            )
        );
        assert_eq!(
            sql(r#"externalId ew "b_""#),
            (
                "(a.external_id IS NOT NULL AND LENGTH(a.external_id) >= LENGTH($1) AND \
                 SUBSTR(a.external_id, LENGTH(a.external_id) - LENGTH($2) + 1) = $3)"
                    .into(),
                vec![t("b_"), t("b_"), t("b_")]
            )
        );
        assert_eq!(
            sql(r#"externalId co "\\""#),
            ("(a.external_id IS NOT NULL AND REPLACE(a.external_id, $1, '') <> a.external_id)".into(), vec![t("\\")])
        );
        assert_eq!(sql(r#"externalId co """#), ("(a.external_id IS NOT NULL)".into(), vec![]));
        // Presence.
        assert_eq!(sql("title pr"), ("(p.title IS NOT NULL AND p.title <> '')".into(), vec![]));
        assert_eq!(sql("title eq null"), ("(p.title IS NULL OR p.title = '')".into(), vec![]));
        assert_eq!(sql("title ne null"), ("(p.title IS NOT NULL AND p.title <> '')".into(), vec![]));
        assert_eq!(sql("active pr"), ("(a.active IS NOT NULL)".into(), vec![]));
        assert_eq!(sql("active eq null"), ("(a.active IS NULL)".into(), vec![]));
    }

    #[test]
    fn sql_combinations_and_numbering() {
        assert_eq!(
            sql(r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#),
            (
                "((p.user_type IS NOT NULL AND LOWER(p.user_type) = LOWER($1)) AND \
                 ((p.email IS NOT NULL AND LOWER(p.email) LIKE LOWER($2) ESCAPE '\\') OR \
                 (p.email IS NOT NULL AND LOWER(p.email) LIKE LOWER($3) ESCAPE '\\')))"
                    .into(),
                vec![t("employee"), t("%example.com%"), t("%example.org%")]
            )
        );
        let f = ok(r#"title pr and userName eq "x" and loginCount gt 3"#);
        let (text, params) = to_sql(&f, &resolver, 5).unwrap();
        assert!(text.contains("$5") && text.contains("$6") && !text.contains("$7") && !text.contains("$4"));
        assert_eq!(params, vec![t("x"), SqlParam::Int(3)]);
    }

    #[test]
    fn sql_not_is_null_safe() {
        // Every leaf is a definite true/false, so NOT of it matches NULL columns.
        assert_eq!(
            sql(r#"not (userName eq "a")"#),
            ("NOT (a.login_id IS NOT NULL AND LOWER(a.login_id) = LOWER($1))".into(), vec![t("a")])
        );
        assert_eq!(
            sql(r#"userType ne "Employee" and not (emails co "example.com")"#).0,
            "((p.user_type IS NULL OR LOWER(p.user_type) <> LOWER($1)) AND \
             NOT (p.email IS NOT NULL AND LOWER(p.email) LIKE LOWER($2) ESCAPE '\\'))"
        );
        assert_eq!(sql("not (loginCount gt 1)").0, "NOT (a.login_count IS NOT NULL AND a.login_count > $1)");
    }

    #[test]
    fn sql_unknown_attributes() {
        assert_eq!(sql(r#"nickName eq "x""#), ("(1=0)".into(), vec![]));
        assert_eq!(sql(r#"nickName ne "x""#), ("(1=1)".into(), vec![]));
        assert_eq!(sql(r#"nickName gt 5"#), ("(1=0)".into(), vec![]));
        assert_eq!(sql(r#"nickName co "x""#), ("(1=0)".into(), vec![]));
        assert_eq!(sql("nickName pr"), ("(1=0)".into(), vec![]));
        assert_eq!(sql("nickName eq null"), ("(1=1)".into(), vec![]));
        assert_eq!(sql("nickName ne null"), ("(1=0)".into(), vec![]));
        assert_eq!(sql(r#"not (nickName eq "x")"#), ("NOT (1=0)".into(), vec![]));
        assert_eq!(
            sql(r#"nickName eq "x" or userName eq "y""#),
            ("((1=0) OR (a.login_id IS NOT NULL AND LOWER(a.login_id) = LOWER($1)))".into(), vec![t("y")])
        );
        // Unknown sub-attribute in a value filter.
        assert_eq!(sql(r#"emails[display eq "x"]"#), ("(1=0)".into(), vec![]));
    }

    #[test]
    fn sql_value_paths() {
        assert_eq!(
            sql(r#"emails[type eq "work" and value co "@example.com"]"#),
            (
                "((p.email_type IS NOT NULL AND LOWER(p.email_type) = LOWER($1)) AND \
                 (p.email IS NOT NULL AND LOWER(p.email) LIKE LOWER($2) ESCAPE '\\'))"
                    .into(),
                vec![t("work"), t("%@example.com%")]
            )
        );
        // The resolver sees absolute paths, with the outer URN.
        let seen = std::cell::RefCell::new(Vec::new());
        let record = |path: &AttrPath| {
            seen.borrow_mut().push(path.clone());
            None
        };
        let f = ok(r#"urn:x:y:emails[type eq "work" or not (primary pr)]"#);
        assert_eq!(to_sql(&f, &record, 1).unwrap(), ("((1=0) OR NOT (1=0))".into(), vec![]));
        let uri = Some("urn:x:y".to_string());
        assert_eq!(
            *seen.borrow(),
            vec![
                AttrPath { uri: uri.clone(), name: "emails".into(), sub: Some("type".into()) },
                AttrPath { uri, name: "emails".into(), sub: Some("primary".into()) },
            ]
        );
        // Hand-built trees that the parser would refuse are refused here too.
        let nested = vp(p("emails"), vp(p("x"), pr(p("y"))));
        assert!(to_sql(&nested, &resolver, 1).unwrap_err().message.contains("nested"));
        let dotted = vp(p("emails"), pr(ps("emails", "type")));
        assert!(to_sql(&dotted, &resolver, 1).unwrap_err().message.contains("only sub-attribute names"));
    }

    #[test]
    fn sql_booleans_numbers_times() {
        assert_eq!(
            sql("active eq true"),
            ("(a.active IS NOT NULL AND a.active = $1)".into(), vec![SqlParam::Bool(true)])
        );
        assert_eq!(
            sql("active ne false"),
            ("(a.active IS NULL OR a.active <> $1)".into(), vec![SqlParam::Bool(false)])
        );
        assert_eq!(
            sql("loginCount ge 3"),
            ("(a.login_count IS NOT NULL AND a.login_count >= $1)".into(), vec![SqlParam::Int(3)])
        );
        assert_eq!(sql("loginCount lt 2.5").1, vec![SqlParam::Real(2.5)]);
        assert_eq!(sql("loginCount le -1e300").1, vec![SqlParam::Real(-1e300)]);
        assert_eq!(
            sql(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#),
            ("(a.updated_at IS NOT NULL AND a.updated_at > $1)".into(), vec![SqlParam::Int(1_305_261_754)])
        );
        for op in ["ge", "lt", "le", "eq", "ne"] {
            assert_eq!(
                sql(&format!(r#"meta.lastModified {op} "2011-05-13T13:42:34.999+09:00""#)).1,
                vec![SqlParam::Int(1_305_261_754)]
            );
        }
        assert_eq!(sql(r#"meta.lastModified lt "1969-12-31T23:59:59.5z""#).1, vec![SqlParam::Int(-1)]);
    }

    #[test]
    fn sql_type_errors() {
        for (filter, part) in [
            (r#"active eq "true""#, "'active' is a boolean and cannot be compared with a string"),
            ("active gt true", "cannot compare with a boolean"),
            ("active co \"t\"", "'active' is a boolean"),
            ("active eq 1", "cannot be compared with a number"),
            ("userName eq 5", "'userName' is a string and cannot be compared with a number"),
            ("userName eq true", "cannot be compared with a boolean"),
            ("userName co 5", "needs a string value"),
            ("userName gt null", "cannot compare with null"),
            ("nickName gt null", "cannot compare with null"),
            ("nickName sw false", "needs a string value"),
            (r#"loginCount eq "5""#, "'loginCount' is a number"),
            ("meta.lastModified gt 5", "is a dateTime and cannot be compared with a number"),
            (r#"meta.lastModified co "2011""#, "'co' is not allowed"),
            (r#"meta.lastModified gt "yesterday""#, "expected a value such as"),
            (r#"meta.lastModified gt "2011-02-29T00:00:00Z""#, "is a dateTime"),
        ] {
            let msg = sql_err(filter);
            assert!(msg.contains(part), "{filter}: {msg}");
        }
    }

    #[test]
    fn datetimes() {
        let d = parse_datetime;
        assert_eq!(d("2011-05-13T04:42:34Z"), Some(1_305_261_754));
        assert_eq!(d("2011-05-13t04:42:34z"), Some(1_305_261_754));
        assert_eq!(d("2011-05-13T04:42:34"), Some(1_305_261_754));
        assert_eq!(d("2011-05-13T04:42:34.123456789Z"), Some(1_305_261_754));
        assert_eq!(d("2011-05-13T13:42:34+09:00"), Some(1_305_261_754));
        assert_eq!(d("2011-05-12T23:12:34-05:30"), Some(1_305_261_754));
        assert_eq!(d("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(d("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(d("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(d("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
        assert_eq!(d("9999-12-31T23:59:59Z"), Some(253_402_300_799));
        assert_eq!(d("2016-12-31T23:59:60Z"), d("2017-01-01T00:00:00Z"));
        assert!(d("2024-02-29T00:00:00Z").is_some());
        for bad in [
            "1900-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2011-04-31T00:00:00Z",
            "2011-13-01T00:00:00Z",
            "2011-00-01T00:00:00Z",
            "2011-01-00T00:00:00Z",
            "2011-01-01T24:00:00Z",
            "2011-01-01T00:60:00Z",
            "2011-01-01T00:00:61Z",
            "2011-01-01T00:00:00.Z",
            "2011-01-01T00:00:00+24:00",
            "2011-01-01T00:00:00+0900",
            "2011-01-01T00:00:00Z ",
            "2011-01-01 00:00:00Z",
            "2011-1-01T00:00:00Z",
            "+011-01-01T00:00:00Z",
            "2011-01-01",
            "",
            "2011-01-01T00:00:0é",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    // ----- property tests -----
    //
    // Case counts (each run of `cargo test`; about 1 s in release, 7 s in debug):
    // arbitrary strings 4000, arbitrary bytes 4000, token soups 4000, clause-shaped
    // soups 4000, mutated valid filters 4000 (each fuzz input is also tried wrapped as
    // `emails[…]` / `emails[…].value`, through parse, parse_patch_path, Display round
    // trip and to_sql), filter round trips 3000, to_sql on generated trees 3000, PATCH
    // path round trips 2000, JSON strings/numbers vs serde_json 2000, dateTime vs a
    // naive calendar 2000: 32,000 generated cases in all. Measured while writing: of
    // the mutated filters about 11% still parse, the rest fail deep in the grammar.

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(cases) }
    }

    /// Run everything on one input; nothing may panic or take long.
    fn exercise(input: &str) {
        let start = Instant::now();
        if let Ok(f) = parse(input) {
            let text = f.to_string();
            assert_eq!(parse(&text).as_ref(), Ok(&f), "round trip via {text:?}");
            let _ = to_sql(&f, &resolver, 1);
        }
        if let Ok(pp) = parse_patch_path(input) {
            let text = pp.to_string();
            assert_eq!(parse_patch_path(&text).as_ref(), Ok(&pp), "round trip via {text:?}");
        }
        assert!(start.elapsed() < Duration::from_millis(500), "slow on {input:?}");
    }

    fn token() -> impl Strategy<Value = String> {
        let fixed = prop::sample::select(vec![
            "userName",
            "emails",
            "name.familyName",
            "emails.value",
            "meta.lastModified",
            "type",
            "value",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "urn:a:b:c",
            "urn:",
            "urn",
            "x.y.z",
            ":",
            ".",
            "eq",
            "ne",
            "co",
            "sw",
            "ew",
            "gt",
            "ge",
            "lt",
            "le",
            "pr",
            "EQ",
            "Pr",
            "and",
            "or",
            "not",
            "AND",
            "Or",
            "NOT",
            "(",
            ")",
            "[",
            "]",
            "\"",
            "\\",
            "'",
            "true",
            "false",
            "null",
            "0",
            "-1.5e3",
            "01",
            "1e999",
            "\"work\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "é",
            "\t",
            "\u{0}",
        ])
        .prop_map(String::from);
        prop_oneof![
            4 => fixed,
            1 => "[a-zA-Z][a-zA-Z0-9_-]{0,6}",
            1 => "\"[^\"\\\\]{0,6}\"",
            1 => "-?[0-9]{1,4}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            1 => any::<char>().prop_map(String::from),
        ]
    }

    fn token_soup() -> impl Strategy<Value = String> {
        prop::collection::vec((token(), prop::sample::select(vec!["", " ", " ", "  "])), 0..40).prop_map(|parts| {
            parts.into_iter().fold(String::new(), |mut acc, (tok, sep)| {
                acc.push_str(&tok);
                acc.push_str(sep);
                acc
            })
        })
    }

    /// Clause-shaped soup: `[not] ( path op value )` pieces with random connectors,
    /// brackets and parentheses, so that a fair share is valid or nearly so.
    fn clause_soup() -> impl Strategy<Value = String> {
        let pick = |items: &[&'static str]| prop::sample::select(items.to_vec());
        let clause = (
            pick(&["", "", "(", "not (", "NOT(", "((", ")"]),
            pick(&[
                "userName",
                "emails",
                "emails.value",
                "meta.lastModified",
                "urn:a:b:name.x",
                "not",
                "emails[type",
                "[",
                "",
            ]),
            pick(&["eq", "ne", "co", "sw", "gt", "le", "pr", "PR", "Eq", "like", ""]),
            prop_oneof![
                pick(&["\"x\"", "\"\\u00e9\"", "1", "-2.5e3", "true", "null", "", "\"", "x"]).prop_map(String::from),
                any::<String>().prop_map(|v| serde_json::to_string(&v).unwrap_or_default()),
            ],
            pick(&["", "", ")", "]", "))", "])", "]."]),
            pick(&[" and ", " or ", " AND ", " ", "", " and not ", " or ("]),
        );
        prop::collection::vec(clause, 1..8).prop_map(|clauses| {
            let mut out = String::new();
            for (open, path, op, value, close, link) in clauses {
                out.push_str(open);
                out.push_str(path);
                out.push(' ');
                out.push_str(op);
                out.push(' ');
                if !op.eq_ignore_ascii_case("pr") {
                    out.push_str(&value);
                }
                out.push_str(close);
                out.push_str(link);
            }
            out
        })
    }

    /// The canonical text of a valid filter with a few random edits.
    fn mutated_filter() -> impl Strategy<Value = String> {
        let edit = (0usize..4, any::<prop::sample::Index>(), token());
        (arb_filter(), prop::collection::vec(edit, 1..4)).prop_map(|(filter, edits)| {
            let mut chars: Vec<char> = filter.to_string().chars().collect();
            for (kind, at, tok) in edits {
                let i = at.index(chars.len() + 1);
                match kind {
                    0 => chars.truncate(i),
                    1 if i < chars.len() => {
                        chars.remove(i);
                    }
                    2 => {
                        let tail = chars.split_off(i);
                        chars.extend(tok.chars());
                        chars.extend(tail);
                    }
                    _ => {
                        let copy: Vec<char> = chars[i..].iter().take(12).copied().collect();
                        chars.extend(copy);
                    }
                }
            }
            chars.into_iter().collect()
        })
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
            1 => prop::sample::select(vec!["and", "or", "not", "NOT", "pr", "eq", "true", "null", "urn"]).prop_map(String::from),
        ]
    }

    fn arb_uri() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["urn", "URN", "Urn"]),
            prop::collection::vec("[a-zA-Z0-9][a-zA-Z0-9._+%~/-]{0,6}", 1..6),
        )
            .prop_map(|(scheme, segments)| format!("{scheme}:{}", segments.join(":")))
    }

    fn arb_path(uri_and_sub: bool) -> BoxedStrategy<AttrPath> {
        if uri_and_sub {
            (prop::option::of(arb_uri()), arb_name(), prop::option::of(arb_name()))
                .prop_map(|(uri, name, sub)| AttrPath { uri, name, sub })
                .boxed()
        } else {
            arb_name().prop_map(AttrPath::new).boxed()
        }
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(vec![Eq, Ne, Co, Sw, Ew, Gt, Ge, Lt, Le])
    }

    fn arb_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            any::<String>().prop_map(CompValue::Str),
            "[a-z@. %_\\\\]{0,8}".prop_map(CompValue::Str),
            any::<i32>().prop_map(|v| CompValue::Num(f64::from(v))),
            any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(CompValue::Num),
            any::<bool>().prop_map(CompValue::Bool),
            Just(CompValue::Null),
            Just(CompValue::Str("2011-05-13T04:42:34.5+09:00".into())),
        ]
    }

    fn arb_leaf(uri_and_sub: bool) -> BoxedStrategy<Filter> {
        prop_oneof![
            3 => (arb_path(uri_and_sub), arb_op(), arb_value())
                .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
            1 => arb_path(uri_and_sub).prop_map(Filter::Present),
        ]
        .boxed()
    }

    fn combine(leaf: BoxedStrategy<Filter>, depth: u32) -> BoxedStrategy<Filter> {
        leaf.prop_recursive(depth, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| or(a, b)),
                inner.prop_map(not),
            ]
        })
        .boxed()
    }

    fn arb_value_filter() -> BoxedStrategy<Filter> {
        combine(arb_leaf(false), 3)
    }

    fn arb_filter() -> BoxedStrategy<Filter> {
        let value_path = (arb_path(true), arb_value_filter()).prop_map(|(mut path, f)| {
            path.sub = None;
            vp(path, f)
        });
        combine(prop_oneof![3 => arb_leaf(true), 1 => value_path].boxed(), 5)
    }

    fn naive_days(year: i64, month: i64, day: i64) -> i64 {
        let year_len = |y: i64| if is_leap_year(y) { 366 } else { 365 };
        let mut days: i64 =
            if year >= 1970 { (1970..year).map(year_len).sum() } else { -(year..1970).map(year_len).sum::<i64>() };
        days += (1..month).map(|m| days_in_month(year, m)).sum::<i64>();
        days + day - 1
    }

    proptest! {
        #![proptest_config(config(4000))]

        #[test]
        fn fuzz_arbitrary_strings(input in any::<String>()) {
            exercise(&input);
        }

        #[test]
        fn fuzz_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            exercise(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn fuzz_token_soup(input in token_soup()) {
            exercise(&input);
            exercise(&format!("emails[{input}]"));
            exercise(&format!("emails[{input}].value"));
        }

        #[test]
        fn fuzz_clause_soup(input in clause_soup()) {
            exercise(&input);
            exercise(&format!("emails[{input}].value"));
        }

        #[test]
        fn fuzz_mutated_filters(input in mutated_filter()) {
            exercise(&input);
            exercise(&format!("emails[{input}]"));
        }
    }

    proptest! {
        #![proptest_config(config(3000))]

        #[test]
        fn round_trip(filter in arb_filter()) {
            let text = filter.to_string();
            prop_assert_eq!(parse(&text), Ok(filter), "text: {}", text);
        }

        #[test]
        fn to_sql_is_total_and_numbers_placeholders(filter in arb_filter(), first in 1usize..50) {
            if let Ok((text, params)) = to_sql(&filter, &resolver, first) {
                prop_assert_eq!(text.matches('$').count(), params.len());
                for k in first..first + params.len() {
                    prop_assert!(text.contains(&format!("${k}")), "missing ${} in {}", k, text);
                }
                let past_end = format!("${}", first + params.len());
                prop_assert!(!text.contains(&past_end), "{} in {}", past_end, text);
                prop_assert_eq!(text.matches('(').count(), text.matches(')').count());
            }
        }
    }

    proptest! {
        #![proptest_config(config(2000))]

        #[test]
        fn patch_path_round_trip(attr in arb_path(true), filter in prop::option::of(arb_value_filter()), sub in prop::option::of(arb_name())) {
            let pp = match filter {
                Some(f) => PatchPath { attr: AttrPath { sub: None, ..attr }, filter: Some(f), sub_after_filter: sub },
                None => PatchPath { attr, filter: None, sub_after_filter: None },
            };
            let text = pp.to_string();
            prop_assert_eq!(parse_patch_path(&text), Ok(pp), "text: {}", text);
        }

        #[test]
        fn json_values_agree_with_serde_json(text in any::<String>(), number in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
            let quoted = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(parse(&format!("a eq {quoted}")), Ok(cmp(p("a"), Eq, CompValue::Str(text))));
            let json_number = serde_json::to_string(&number).unwrap();
            prop_assert_eq!(parse(&format!("a gt {json_number}")), Ok(cmp(p("a"), Gt, num(number))));
        }

        #[test]
        fn datetime_matches_naive_calendar(
            year in 1i64..=9999, month in 1i64..=12, day_seed in 0i64..31,
            h in 0i64..24, mi in 0i64..60, sec in 0i64..60, off_h in 0i64..24, off_m in 0i64..60, west in any::<bool>()
        ) {
            let day = day_seed % days_in_month(year, month) + 1;
            let sign = if west { '-' } else { '+' };
            let text = format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{sec:02}.25{sign}{off_h:02}:{off_m:02}");
            let offset = (off_h * 3600 + off_m * 60) * if west { -1 } else { 1 };
            let expected = naive_days(year, month, day) * 86_400 + h * 3600 + mi * 60 + sec - offset;
            prop_assert_eq!(parse_datetime(&text), Some(expected), "{}", text);
        }
    }
}
