//! The generic Sieve syntax tree (RFC 5228 §8): what the parser produces before any command is
//! known. Every command and test has the same shape, a name with arguments; the validator
//! ([`super::validate`]) checks them against what each command accepts.

/// A position in the script: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One argument of a command or test (RFC 5228 §8.3 `argument`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Argument {
    /// A string (`"..."` or `text:` multi-line) or a string list (`["a", "b"]`). A single
    /// string is a list of one; `single` tells which form the script used (some arguments
    /// take only a string).
    Strings {
        /// The strings, with escapes (`\"`, `\\`) and multi-line dot-stuffing already
        /// removed. Variables (`${name}`) are not expanded here.
        values: Vec<String>,
        /// True when written as one string rather than a bracketed list.
        single: bool,
        /// Where the argument starts.
        pos: Pos,
    },
    /// A number with its `K`/`M`/`G` quantifier applied (RFC 5228 §2.4.1).
    Number {
        /// The value.
        value: u64,
        /// Where it starts.
        pos: Pos,
    },
    /// A tagged argument such as `:contains`, stored without the colon, lower-cased
    /// (`contains`).
    Tag {
        /// The tag name without `:`.
        name: String,
        /// Where it starts.
        pos: Pos,
    },
}

impl Argument {
    /// Where this argument starts.
    pub fn pos(&self) -> Pos {
        match self {
            Argument::Strings { pos, .. } | Argument::Number { pos, .. } | Argument::Tag { pos, .. } => *pos,
        }
    }
}

/// A test (RFC 5228 §8.3 `test`): `name arguments [test-list]`, e.g.
/// `header :contains "subject" "x"` or `anyof (true, false)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    /// The identifier, lower-cased.
    pub name: String,
    /// Its arguments in script order.
    pub args: Vec<Argument>,
    /// Nested tests: `allof`/`anyof` take a list, `not` takes one.
    pub tests: Vec<Test>,
    /// Where the identifier starts.
    pub pos: Pos,
}

/// A command (RFC 5228 §8.3 `command`): `name arguments (";" / block)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The identifier, lower-cased.
    pub name: String,
    /// Its arguments in script order.
    pub args: Vec<Argument>,
    /// Tests: `if`/`elsif` take exactly one.
    pub tests: Vec<Test>,
    /// The block (`{ ... }`) for `if`/`elsif`/`else`; `None` for a command ended by `;`.
    pub block: Option<Vec<Command>>,
    /// Where the identifier starts.
    pub pos: Pos,
}
