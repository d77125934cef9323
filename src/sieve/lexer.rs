//! Sieve tokens (RFC 5228 §8.1): identifiers, tags, numbers, strings (quoted and `text:`),
//! punctuation, with comments and white space skipped and each token's position.
//!
//! Positions are 1-based `line:column`; columns count characters. LF and CRLF both end a
//! line. Every token is produced by one bounded scan over the source: no recursion.

use super::ast::Pos;
use super::CompileError;

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// An identifier, lower-cased (`if`, `fileinto`).
    Ident(String),
    /// A tag without its colon, lower-cased (`contains` for `:Contains`).
    Tag(String),
    /// A number with its `K`/`M`/`G` quantifier applied.
    Number(u64),
    /// A quoted or `text:` string with escapes / dot-stuffing removed.
    Str(String),
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `;`
    Semicolon,
    /// The end of the source.
    Eof,
}

impl Token {
    /// A short description for error messages (`"';'"`, `"identifier 'if'"`).
    pub fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("identifier '{s}'"),
            Token::Tag(s) => format!("tag ':{s}'"),
            Token::Number(n) => format!("number {n}"),
            Token::Str(_) => "string".to_owned(),
            Token::LBracket => "'['".to_owned(),
            Token::RBracket => "']'".to_owned(),
            Token::LParen => "'('".to_owned(),
            Token::RParen => "')'".to_owned(),
            Token::LBrace => "'{'".to_owned(),
            Token::RBrace => "'}'".to_owned(),
            Token::Comma => "','".to_owned(),
            Token::Semicolon => "';'".to_owned(),
            Token::Eof => "end of script".to_owned(),
        }
    }
}

/// The tokenizer over a source text.
pub struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    at: usize,
    line: u32,
    column: u32,
}

fn err(pos: Pos, message: impl Into<String>) -> CompileError {
    CompileError {
        pos,
        message: message.into(),
    }
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            src,
            at: 0,
            line: 1,
            column: 1,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src.get(self.at..).and_then(|s| s.chars().next())
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src.get(self.at..)?.chars();
        it.next();
        it.next()
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.at..).unwrap_or("")
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    /// Skips white space and comments. An unterminated `/*` is an error.
    fn skip_blank(&mut self) -> Result<(), CompileError> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r' | '\n') => {
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('/') if self.peek2() == Some('*') => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(err(start, "unterminated '/*' comment")),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token and where it starts.
    pub fn next_token(&mut self) -> Result<(Token, Pos), CompileError> {
        self.skip_blank()?;
        let pos = self.pos();
        let Some(c) = self.peek() else {
            return Ok((Token::Eof, pos));
        };
        let punct = match c {
            '[' => Some(Token::LBracket),
            ']' => Some(Token::RBracket),
            '(' => Some(Token::LParen),
            ')' => Some(Token::RParen),
            '{' => Some(Token::LBrace),
            '}' => Some(Token::RBrace),
            ',' => Some(Token::Comma),
            ';' => Some(Token::Semicolon),
            _ => None,
        };
        if let Some(t) = punct {
            self.bump();
            return Ok((t, pos));
        }
        match c {
            '"' => self.quoted(pos).map(|s| (Token::Str(s), pos)),
            ':' => {
                self.bump();
                match self.peek() {
                    Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                        Ok((Token::Tag(self.ident()), pos))
                    }
                    _ => Err(err(pos, "expected a tag name after ':'")),
                }
            }
            '0'..='9' => self.number(pos).map(|n| (Token::Number(n), pos)),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let id = self.ident();
                if id == "text" && self.peek() == Some(':') {
                    self.bump();
                    return self.multiline(pos).map(|s| (Token::Str(s), pos));
                }
                Ok((Token::Ident(id), pos))
            }
            c => Err(err(pos, format!("unexpected character {c:?}"))),
        }
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                s.push(c.to_ascii_lowercase());
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    fn number(&mut self, pos: Pos) -> Result<u64, CompileError> {
        let mut n: u64 = 0;
        let mut overflow = false;
        while let Some(c @ '0'..='9') = self.peek() {
            self.bump();
            let d = u64::from(c as u8 - b'0');
            match n.checked_mul(10).and_then(|n| n.checked_add(d)) {
                Some(v) => n = v,
                None => overflow = true,
            }
        }
        let shift = match self.peek() {
            Some('k' | 'K') => 10,
            Some('m' | 'M') => 20,
            Some('g' | 'G') => 30,
            _ => 0,
        };
        if shift > 0 {
            self.bump();
            match n.checked_mul(1u64 << shift) {
                Some(v) => n = v,
                None => overflow = true,
            }
        }
        if overflow {
            return Err(err(pos, "number too large"));
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(self.pos(), "unexpected character after number"));
        }
        Ok(n)
    }

    /// A quoted string (§2.4.2): `\\` and `\"` are escapes, any other backslash is dropped.
    fn quoted(&mut self, pos: Pos) -> Result<String, CompileError> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(err(pos, "unterminated string")),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    None => return Err(err(pos, "unterminated string")),
                    Some(c) => s.push(c),
                },
                Some(c) => s.push(c),
            }
        }
    }

    /// A `text:` string (§2.4.2, §8.1): the rest of the `text:` line may hold white space
    /// and a `#` comment; then lines up to one holding a single `.`; a leading `..` loses a
    /// dot. The line ends are kept as written.
    fn multiline(&mut self, pos: Pos) -> Result<String, CompileError> {
        while let Some(' ' | '\t') = self.peek() {
            self.bump();
        }
        match self.peek() {
            Some('#') => {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            Some('\r') if self.peek2() == Some('\n') => {
                self.bump();
                self.bump();
            }
            Some('\n') => {
                self.bump();
            }
            None => return Err(err(pos, "unterminated multi-line string")),
            Some(_) => return Err(err(self.pos(), "expected end of line after 'text:'")),
        }
        let mut s = String::new();
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Err(err(
                    pos,
                    "unterminated multi-line string (no line with a single '.')",
                ));
            }
            let (line, ending) = match rest.find('\n') {
                Some(i) => (rest.get(..i).unwrap_or(""), rest.get(..=i).unwrap_or("")),
                None => (rest, rest),
            };
            let content = line.strip_suffix('\r').unwrap_or(line);
            if content == "." {
                for _ in ending.chars() {
                    self.bump();
                }
                return Ok(s);
            }
            let unstuffed = if ending.starts_with("..") {
                ending.get(1..).unwrap_or("")
            } else {
                ending
            };
            s.push_str(unstuffed);
            for _ in ending.chars() {
                self.bump();
            }
            if !ending.ends_with('\n') {
                return Err(err(
                    pos,
                    "unterminated multi-line string (no line with a single '.')",
                ));
            }
        }
    }
}

/// Every token of `src` up to and including [`Token::Eof`] (for tests and tools).
pub fn tokenize(src: &str) -> Result<Vec<(Token, Pos)>, CompileError> {
    let mut lx = Lexer::new(src);
    let mut out = Vec::new();
    loop {
        let t = lx.next_token()?;
        let end = t.0 == Token::Eof;
        out.push(t);
        if end {
            return Ok(out);
        }
    }
}

/// Checks that `src` is UTF-8 (RFC 5228 §2.4.2), or says where it is not.
pub fn check_utf8(src: &[u8]) -> Result<&str, CompileError> {
    match std::str::from_utf8(src) {
        Ok(s) => Ok(s),
        Err(e) => {
            let good = src.get(..e.valid_up_to()).unwrap_or(&[]);
            let text = std::str::from_utf8(good).unwrap_or("");
            let mut pos = Pos { line: 1, column: 1 };
            for c in text.chars() {
                if c == '\n' {
                    pos.line = pos.line.saturating_add(1);
                    pos.column = 1;
                } else {
                    pos.column = pos.column.saturating_add(1);
                }
            }
            Err(err(pos, "script is not valid UTF-8"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
