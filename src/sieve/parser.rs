//! The Sieve grammar (RFC 5228 §8.2/§8.3): tokens into the generic tree of [`super::ast`],
//! with `line:column` errors. Block and test nesting are bounded (the recursion depth with
//! them), so no input can overflow the stack.

use super::ast::{Argument, Command, Pos, Test};
use super::lexer::{Lexer, Token};
use super::CompileError;

/// Parses `source` into commands. Blocks may nest at most `max_nesting` deep, and tests
/// (inside `not`/`allof`/`anyof`) too; deeper is an error. Errors carry the position of
/// the offending token; parsing stops at the first.
pub fn parse(source: &str, max_nesting: usize) -> Result<Vec<Command>, CompileError> {
    let mut p = Parser {
        lx: Lexer::new(source),
        tok: Token::Eof,
        pos: Pos::default(),
        max_nesting,
    };
    p.advance()?;
    let cmds = p.commands(0)?;
    if p.tok != Token::Eof {
        return Err(p.error(format!("unexpected {}", p.tok.describe())));
    }
    Ok(cmds)
}

struct Parser<'a> {
    lx: Lexer<'a>,
    tok: Token,
    pos: Pos,
    max_nesting: usize,
}

impl Parser<'_> {
    fn advance(&mut self) -> Result<(), CompileError> {
        let (t, p) = self.lx.next_token()?;
        self.tok = t;
        self.pos = p;
        Ok(())
    }

    fn error(&self, message: impl Into<String>) -> CompileError {
        CompileError {
            pos: self.pos,
            message: message.into(),
        }
    }

    /// `commands = *command`, up to `}` or the end.
    fn commands(&mut self, depth: usize) -> Result<Vec<Command>, CompileError> {
        let mut out = Vec::new();
        loop {
            match &self.tok {
                Token::Eof | Token::RBrace => return Ok(out),
                Token::Ident(_) => out.push(self.command(depth)?),
                t => return Err(self.error(format!("expected a command, found {}", t.describe()))),
            }
        }
    }

    fn command(&mut self, depth: usize) -> Result<Command, CompileError> {
        let Token::Ident(name) = std::mem::replace(&mut self.tok, Token::Eof) else {
            return Err(self.error("expected a command"));
        };
        let pos = self.pos;
        self.advance()?;
        let (args, tests) = self.arguments(0)?;
        let block = match self.tok {
            Token::Semicolon => {
                self.advance()?;
                None
            }
            Token::LBrace => {
                if depth >= self.max_nesting {
                    return Err(
                        self.error(format!("blocks nested deeper than {}", self.max_nesting))
                    );
                }
                self.advance()?;
                let cmds = self.commands(depth + 1)?;
                if self.tok != Token::RBrace {
                    return Err(self.error(format!(
                        "expected '}}' to close the block, found {}",
                        self.tok.describe()
                    )));
                }
                self.advance()?;
                Some(cmds)
            }
            ref t => {
                return Err(self.error(format!(
                    "expected ';' after command arguments, found {}",
                    t.describe()
                )));
            }
        };
        Ok(Command {
            name,
            args,
            tests,
            block,
            pos,
        })
    }

    /// `arguments = *argument [test / test-list]`; `depth` is the test nesting so far.
    fn arguments(&mut self, depth: usize) -> Result<(Vec<Argument>, Vec<Test>), CompileError> {
        let mut args = Vec::new();
        loop {
            let pos = self.pos;
            match &mut self.tok {
                Token::Tag(name) => {
                    let name = std::mem::take(name);
                    args.push(Argument::Tag { name, pos });
                    self.advance()?;
                }
                Token::Number(n) => {
                    args.push(Argument::Number { value: *n, pos });
                    self.advance()?;
                }
                Token::Str(s) => {
                    let s = std::mem::take(s);
                    args.push(Argument::Strings {
                        values: vec![s],
                        single: true,
                        pos,
                    });
                    self.advance()?;
                }
                Token::LBracket => {
                    self.advance()?;
                    let mut values = Vec::new();
                    loop {
                        if let Token::Str(s) = &mut self.tok {
                            values.push(std::mem::take(s));
                        } else {
                            let d = self.tok.describe();
                            return Err(
                                self.error(format!("expected a string in the list, found {d}"))
                            );
                        }
                        self.advance()?;
                        match self.tok {
                            Token::Comma => self.advance()?,
                            Token::RBracket => {
                                self.advance()?;
                                break;
                            }
                            ref t => {
                                return Err(self.error(format!(
                                    "expected ',' or ']' in the string list, found {}",
                                    t.describe()
                                )));
                            }
                        }
                    }
                    args.push(Argument::Strings {
                        values,
                        single: false,
                        pos,
                    });
                }
                _ => break,
            }
        }
        let tests = match self.tok {
            Token::Ident(_) => vec![self.test(depth + 1)?],
            Token::LParen => {
                if depth >= self.max_nesting {
                    return Err(
                        self.error(format!("tests nested deeper than {}", self.max_nesting))
                    );
                }
                self.advance()?;
                let mut tests = Vec::new();
                loop {
                    if !matches!(self.tok, Token::Ident(_)) {
                        return Err(
                            self.error(format!("expected a test, found {}", self.tok.describe()))
                        );
                    }
                    tests.push(self.test(depth + 1)?);
                    match self.tok {
                        Token::Comma => self.advance()?,
                        Token::RParen => {
                            self.advance()?;
                            break;
                        }
                        ref t => {
                            return Err(self.error(format!(
                                "expected ',' or ')' in the test list, found {}",
                                t.describe()
                            )))
                        }
                    }
                }
                tests
            }
            _ => Vec::new(),
        };
        Ok((args, tests))
    }

    /// `test = identifier arguments`, at nesting `depth` (1 for a command's own test).
    fn test(&mut self, depth: usize) -> Result<Test, CompileError> {
        if depth > self.max_nesting {
            return Err(self.error(format!("tests nested deeper than {}", self.max_nesting)));
        }
        let Token::Ident(name) = std::mem::replace(&mut self.tok, Token::Eof) else {
            return Err(self.error("expected a test"));
        };
        let pos = self.pos;
        self.advance()?;
        let (args, tests) = self.arguments(depth)?;
        Ok(Test {
            name,
            args,
            tests,
            pos,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
