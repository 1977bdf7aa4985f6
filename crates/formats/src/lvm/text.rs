//! The LVM2 text configuration format, as used by VG metadata:
//!
//! ```text
//! vg0 {                       # a section
//!     extent_size = 8192      # an integer
//!     status = ["READ", "WRITE"]   # a list
//!     physical_volumes { pv0 { id = "..." pe_start = 2048 } }
//! }
//! ```
//!
//! Values are strings (double-quoted, `\` escapes the next character),
//! integers (possibly negative), floats (kept as text) and lists of those.
//! `#` starts a comment up to the end of the line. Nesting is limited to
//! [`MAX_NESTING`] so crafted input cannot exhaust the stack.

use std::fmt;

/// The deepest nesting of sections and lists accepted.
pub const MAX_NESTING: usize = 32;

/// A value of the configuration tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    /// A number with a fraction, kept as written.
    Float(String),
    List(Vec<Value>),
    Section(Section),
}

/// A `name { ... }` block: its entries in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub entries: Vec<(String, Value)>,
}

impl Section {
    /// The first value named `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The sub-section named `key`.
    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key)? {
            Value::Section(s) => Some(s),
            _ => None,
        }
    }

    /// The integer named `key`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string named `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The list named `key`.
    pub fn list(&self, key: &str) -> Option<&[Value]> {
        match self.get(key)? {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The sub-sections, with their names, in order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.entries.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k.as_str(), s)),
            _ => None,
        })
    }
}

/// A syntax error, with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub detail: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.detail)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    ListOpen,
    ListClose,
    Equals,
    Comma,
    Str(String),
    Word(String),
}

struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn err(&self, detail: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            detail: detail.into(),
        }
    }

    fn next(&mut self) -> Result<Option<Token>, ParseError> {
        loop {
            let Some(&c) = self.text.get(self.pos) else {
                return Ok(None);
            };
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b'#' => {
                    while self.text.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                c if c.is_ascii_whitespace() || c == 0 => self.pos += 1,
                _ => break,
            }
        }
        let c = self.text[self.pos];
        self.pos += 1;
        Ok(Some(match c {
            b'{' => Token::Open,
            b'}' => Token::Close,
            b'[' => Token::ListOpen,
            b']' => Token::ListClose,
            b'=' => Token::Equals,
            b',' => Token::Comma,
            b'"' => {
                let mut s = Vec::new();
                loop {
                    match self.text.get(self.pos) {
                        None => return Err(self.err("unterminated string")),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let Some(&n) = self.text.get(self.pos + 1) else {
                                return Err(self.err("unterminated string"));
                            };
                            s.push(n);
                            self.pos += 2;
                        }
                        Some(&b) => {
                            if b == b'\n' {
                                self.line += 1;
                            }
                            s.push(b);
                            self.pos += 1;
                        }
                    }
                }
                Token::Str(String::from_utf8_lossy(&s).into_owned())
            }
            _ => {
                let start = self.pos - 1;
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|c| !c.is_ascii_whitespace() && !b"{}[]=,\"#".contains(c))
                {
                    self.pos += 1;
                }
                Token::Word(String::from_utf8_lossy(&self.text[start..self.pos]).into_owned())
            }
        }))
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<Option<Token>>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Option<&Token>, ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next()?);
        }
        Ok(self.peeked.as_ref().and_then(|t| t.as_ref()))
    }

    fn take(&mut self) -> Result<Option<Token>, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next(),
        }
    }

    /// Entries up to a `}` (when `nested`) or the end of the text.
    fn body(&mut self, depth: usize) -> Result<Section, ParseError> {
        if depth > MAX_NESTING {
            return Err(self.lex.err(format!("nested deeper than {MAX_NESTING}")));
        }
        let mut section = Section::default();
        loop {
            let key = match self.take()? {
                None if depth == 0 => return Ok(section),
                None => return Err(self.lex.err("missing '}' before the end")),
                Some(Token::Close) if depth > 0 => return Ok(section),
                Some(Token::Word(w)) | Some(Token::Str(w)) => w,
                Some(t) => return Err(self.lex.err(format!("expected a name, found {t:?}"))),
            };
            match self.take()? {
                Some(Token::Open) => {
                    let sub = self.body(depth + 1)?;
                    section.entries.push((key, Value::Section(sub)));
                }
                Some(Token::Equals) => {
                    let v = self.value(depth + 1)?;
                    section.entries.push((key, v));
                }
                t => {
                    return Err(self
                        .lex
                        .err(format!("expected '=' or '{{' after {key:?}, found {t:?}")))
                }
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_NESTING {
            return Err(self.lex.err(format!("nested deeper than {MAX_NESTING}")));
        }
        match self.take()? {
            Some(Token::Str(s)) => Ok(Value::Str(s)),
            Some(Token::Word(w)) => {
                if let Ok(i) = w.parse::<i64>() {
                    Ok(Value::Int(i))
                } else if w.parse::<f64>().is_ok() {
                    Ok(Value::Float(w))
                } else {
                    Err(self.lex.err(format!("bad value {w:?}")))
                }
            }
            Some(Token::ListOpen) => {
                let mut items = Vec::new();
                if self.peek()? == Some(&Token::ListClose) {
                    self.take()?;
                    return Ok(Value::List(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    match self.take()? {
                        Some(Token::Comma) => {}
                        Some(Token::ListClose) => return Ok(Value::List(items)),
                        t => {
                            return Err(self
                                .lex
                                .err(format!("expected ',' or ']' in a list, found {t:?}")))
                        }
                    }
                }
            }
            t => Err(self.lex.err(format!("expected a value, found {t:?}"))),
        }
    }
}

/// Parses a whole configuration text into its top-level section.
pub fn parse(text: &str) -> Result<Section, ParseError> {
    let mut p = Parser {
        lex: Lexer {
            text: text.as_bytes(),
            pos: 0,
            line: 1,
        },
        peeked: None,
    };
    p.body(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_lists_and_comments() {
        let text = "# comment\nvg0 {\n id = \"a\\\"b\"\n seqno = -3 # trailing\n \
                    status = [\"READ\", \"WRITE\"]\n flags = []\n f = 1.5\n\
                    inner { stripes = [\n\"pv0\", 0\n] }\n}\ncontents = \"Text\"\n";
        let top = parse(text).unwrap();
        let vg = top.section("vg0").unwrap();
        assert_eq!(vg.str("id"), Some("a\"b"));
        assert_eq!(vg.int("seqno"), Some(-3));
        assert_eq!(vg.list("status").unwrap().len(), 2);
        assert_eq!(vg.list("flags"), Some(&[][..]));
        assert_eq!(vg.get("f"), Some(&Value::Float("1.5".into())));
        let stripes = vg.section("inner").unwrap().list("stripes").unwrap();
        assert_eq!(stripes, &[Value::Str("pv0".into()), Value::Int(0)]);
        assert_eq!(top.str("contents"), Some("Text"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("vg0 {\n a = \n}\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse("vg0 {\n a = 1\n")
            .unwrap_err()
            .detail
            .contains("missing '}'"));
        assert!(parse("a = \"x").is_err());
        assert!(parse("a = [1 2]").is_err());
        let deep = "a {".repeat(100);
        assert!(parse(&deep).unwrap_err().detail.contains("nested deeper"));
    }
}
