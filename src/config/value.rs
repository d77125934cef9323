//! How each kind of configuration value is read from the file and printed back by `lmtpd -n`:
//! one small codec per kind of value, each with the exact wording of its refusals.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::{parse_metrics, parse_size, Listen, LockKind, StoreKind};

/// Reads one kind of value from its text in the file and writes it back in the same syntax,
/// so that the output of `lmtpd -n` is itself a valid configuration with the same settings.
pub(super) trait Codec<T> {
    /// The value written as `text`, or why it is refused.
    fn parse(&self, text: &str) -> Result<T, String>;

    /// The value in configuration-file syntax.
    fn show(&self, value: &T) -> String;

    /// Applies one `key = text` line to the setting (replaces it, unless the key repeats).
    fn set(&self, slot: &mut T, text: &str) -> Result<(), String> {
        *slot = self.parse(text)?;
        Ok(())
    }

    /// Writes the setting as `key = value` line(s).
    fn dump(&self, key: &str, value: &T, out: &mut String) {
        let _ = writeln!(out, "{key} = {}", self.show(value));
    }
}

/// Any text, kept as written (user and group names, `postmaster`).
pub(super) struct Text;

impl Codec<String> for Text {
    fn parse(&self, text: &str) -> Result<String, String> {
        Ok(text.into())
    }
    fn show(&self, value: &String) -> String {
        value.clone()
    }
}

/// A file or directory path, relative to the working directory unless absolute.
pub(super) struct FilePath;

impl Codec<PathBuf> for FilePath {
    fn parse(&self, text: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(text))
    }
    fn show(&self, value: &PathBuf) -> String {
        value.display().to_string()
    }
}

/// `yes`/`no` (also `true`/`false`, `on`/`off`, `1`/`0`); printed as `yes` or `no`.
pub(super) struct YesNo;

impl Codec<bool> for YesNo {
    fn parse(&self, text: &str) -> Result<bool, String> {
        match text {
            "yes" | "true" | "on" | "1" => Ok(true),
            "no" | "false" | "off" | "0" => Ok(false),
            _ => Err(format!("'{text}' is not yes or no")),
        }
    }
    fn show(&self, value: &bool) -> String {
        if *value { "yes" } else { "no" }.into()
    }
}

/// A whole number in `min..=max`.
pub(super) struct Count(pub u64, pub u64);

impl Count {
    fn number(&self, text: &str) -> Result<u64, String> {
        let Count(min, max) = *self;
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "'{text}' is not a whole number from {min} to {max}"
            )),
        }
    }
}

impl Codec<usize> for Count {
    fn parse(&self, text: &str) -> Result<usize, String> {
        let n = self.number(text)?;
        usize::try_from(n).map_err(|_| format!("'{text}' is too large"))
    }
    fn show(&self, value: &usize) -> String {
        value.to_string()
    }
}

/// A number of seconds in `min..=max`.
pub(super) struct Secs(pub u64, pub u64);

impl Codec<Duration> for Secs {
    fn parse(&self, text: &str) -> Result<Duration, String> {
        Count(self.0, self.1).number(text).map(Duration::from_secs)
    }
    fn show(&self, value: &Duration) -> String {
        value.as_secs().to_string()
    }
}

/// A period: a whole number with an optional unit, `s` (the default), `m`, `h` or `d`
/// (`7d`, `12h`), in `min..=max` seconds; printed with the largest unit that divides it.
pub(super) struct Period(pub u64, pub u64);

impl Codec<Duration> for Period {
    fn parse(&self, text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => (&t[..i], &t[i..]),
            None => (t, "s"),
        };
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "'{text}' is not a period (a number with s, m, h or d)"
                ))
            }
        };
        let n = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|n| (self.0..=self.1).contains(n));
        n.map(Duration::from_secs).ok_or_else(|| {
            format!(
                "'{text}' is not a period from {} to {}",
                Period(0, 0).show(&Duration::from_secs(self.0)),
                Period(0, 0).show(&Duration::from_secs(self.1))
            )
        })
    }
    fn show(&self, value: &Duration) -> String {
        let s = value.as_secs();
        match s {
            0 => "0s".into(),
            _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
            _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
            _ if s.is_multiple_of(60) => format!("{}m", s / 60),
            _ => format!("{s}s"),
        }
    }
}

/// A size in bytes with an optional binary suffix (`10K`, `5M`, `2G`); printed in bytes.
pub(super) struct Size;

impl Codec<u64> for Size {
    fn parse(&self, text: &str) -> Result<u64, String> {
        parse_size(text)
    }
    fn show(&self, value: &u64) -> String {
        value.to_string()
    }
}

/// `quota_grace`: a size (`10M`) or a share of the byte limit (`5%`).
pub(super) struct GraceCodec;

impl Codec<crate::quota::Grace> for GraceCodec {
    fn parse(&self, text: &str) -> Result<crate::quota::Grace, String> {
        crate::quota::Grace::parse(text)
    }
    fn show(&self, value: &crate::quota::Grace) -> String {
        value.show()
    }
}

/// `quota_warning`: percentages (`80% 95%`) or `none`.
pub(super) struct WarningsCodec;

impl Codec<crate::quota::Warnings> for WarningsCodec {
    fn parse(&self, text: &str) -> Result<crate::quota::Warnings, String> {
        crate::quota::Warnings::parse(text)
    }
    fn show(&self, value: &crate::quota::Warnings) -> String {
        value.show()
    }
}

/// An octal file mode up to `0777`; printed with four digits (`0660`).
pub(super) struct OctalMode;

impl Codec<u32> for OctalMode {
    fn parse(&self, text: &str) -> Result<u32, String> {
        u32::from_str_radix(text, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("'{text}' is not an octal mode like 0660"))
    }
    fn show(&self, value: &u32) -> String {
        format!("{value:04o}")
    }
}

/// One of a fixed set of words. The first word of a value is the one printed; later ones
/// are accepted spellings (`normalise`). `expected` lists the words for the refusal.
pub(super) struct OneOf<T: 'static> {
    /// The accepted words and their values.
    pub words: &'static [(&'static str, T)],
    /// How the refusal names the choices: `'x' is not {expected}`.
    pub expected: &'static str,
}

impl<T: Copy + PartialEq> Codec<T> for OneOf<T> {
    fn parse(&self, text: &str) -> Result<T, String> {
        self.words
            .iter()
            .find(|(word, _)| *word == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("'{text}' is not {}", self.expected))
    }
    fn show(&self, value: &T) -> String {
        self.words
            .iter()
            .find(|(_, v)| v == value)
            .map_or("", |(word, _)| word)
            .into()
    }
}

/// A text that must pass a check; the check's message is the refusal.
pub(super) struct Checked(pub fn(&str) -> Result<(), String>);

impl Codec<String> for Checked {
    fn parse(&self, text: &str) -> Result<String, String> {
        (self.0)(text)?;
        Ok(text.into())
    }
    fn show(&self, value: &String) -> String {
        value.clone()
    }
}

/// A listener address: `unix:PATH` or an IP address with a port (never port 25).
pub(super) struct Address;

impl Codec<Listen> for Address {
    fn parse(&self, text: &str) -> Result<Listen, String> {
        Listen::parse(text)
    }
    fn show(&self, value: &Listen) -> String {
        value.to_string()
    }
}

/// A repeatable key: every line adds one value, and `lmtpd -n` prints one line per value
/// (none when there is none).
pub(super) struct Each<C>(pub C);

impl<T, C: Codec<T>> Codec<Vec<T>> for Each<C> {
    fn parse(&self, text: &str) -> Result<Vec<T>, String> {
        Ok(vec![self.0.parse(text)?])
    }
    fn show(&self, value: &Vec<T>) -> String {
        let all: Vec<String> = value.iter().map(|v| self.0.show(v)).collect();
        all.join(" ")
    }
    fn set(&self, slot: &mut Vec<T>, text: &str) -> Result<(), String> {
        slot.push(self.0.parse(text)?);
        Ok(())
    }
    fn dump(&self, key: &str, value: &Vec<T>, out: &mut String) {
        for v in value {
            let _ = writeln!(out, "{key} = {}", self.0.show(v));
        }
    }
}

/// `metrics`: `off`, a loopback TCP address or `unix:PATH`.
pub(super) struct Metrics;

impl Codec<Option<Listen>> for Metrics {
    fn parse(&self, text: &str) -> Result<Option<Listen>, String> {
        parse_metrics(text)
    }
    fn show(&self, value: &Option<Listen>) -> String {
        value
            .as_ref()
            .map_or_else(|| "off".into(), Listen::to_string)
    }
}

/// `store`: `maildir`, `mbox` or `sqlite` (when built in).
pub(super) struct Store;

impl Codec<StoreKind> for Store {
    fn parse(&self, text: &str) -> Result<StoreKind, String> {
        StoreKind::parse(text)
    }
    fn show(&self, value: &StoreKind) -> String {
        value.name().into()
    }
}

/// `mbox_locks`: lock names separated by commas or blanks, at least one; printed with
/// blanks.
pub(super) struct Locks;

impl Codec<Vec<LockKind>> for Locks {
    fn parse(&self, text: &str) -> Result<Vec<LockKind>, String> {
        let locks = text
            .split(|ch: char| ch == ',' || ch.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(LockKind::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if locks.is_empty() {
            return Err("name at least one of fcntl, flock, dotlock".into());
        }
        Ok(locks)
    }
    fn show(&self, value: &Vec<LockKind>) -> String {
        let names: Vec<&str> = value.iter().map(|l| l.name()).collect();
        names.join(" ")
    }
}

/// `sieve_special_use`: repeatable `\\Flag=Folder` (RFC 6154 attribute, folder name as scripts
/// write it); an empty value clears the list (including the defaults).
pub(super) struct SpecialUse;

impl SpecialUse {
    fn one(text: &str) -> Result<(String, String), String> {
        let (flag, folder) = text
            .split_once('=')
            .ok_or_else(|| format!("'{text}' is not \\Flag=Folder"))?;
        let (flag, folder) = (flag.trim(), folder.trim());
        let name_ok = flag.len() > 1
            && flag.starts_with('\\')
            && flag[1..].chars().all(|c| c.is_ascii_alphanumeric());
        if !name_ok || folder.is_empty() || folder.chars().any(char::is_control) {
            return Err(format!(
                "'{text}' is not \\Flag=Folder (such as \\Junk=Junk)"
            ));
        }
        Ok((flag.to_string(), folder.to_string()))
    }
}

impl Codec<Vec<(String, String)>> for SpecialUse {
    fn parse(&self, text: &str) -> Result<Vec<(String, String)>, String> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![SpecialUse::one(text)?])
    }
    fn show(&self, value: &Vec<(String, String)>) -> String {
        let all: Vec<String> = value.iter().map(|(f, n)| format!("{f}={n}")).collect();
        all.join(" ")
    }
    fn set(&self, slot: &mut Vec<(String, String)>, text: &str) -> Result<(), String> {
        // The first line in a file replaces the defaults; later ones add to it.
        if text.is_empty() {
            slot.clear();
            return Ok(());
        }
        let one = SpecialUse::one(text)?;
        if *slot == super::default_special_use() {
            slot.clear();
        }
        slot.push(one);
        Ok(())
    }
    fn dump(&self, key: &str, value: &Vec<(String, String)>, out: &mut String) {
        if value.is_empty() {
            let _ = writeln!(out, "{key} =");
        }
        for (f, n) in value {
            let _ = writeln!(out, "{key} = {f}={n}");
        }
    }
}
