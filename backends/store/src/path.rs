//! The one rule for a path component built from an address: what the directory accepts, what
//! a path template may substitute (`%u`, `%n`, `%d`) and what a `+detail` folder name may be.
//!
//! An address never becomes a path unchecked (design §5): a component built from one is not
//! empty, does not start with a dot (so it is never `.` or `..` and never a hidden or
//! Maildir++ folder name), contains no `..`, no `/` and no `\`, and no NUL or other control
//! character. A `+detail` is in addition at most [`MAX_DETAIL`] bytes long. Stores add their
//! own rules on top (Maildir: no trailing dot; mbox: no lock or count file names).

/// Longest `+detail` (in bytes) that may name a folder; longer ones go to the inbox.
pub const MAX_DETAIL: usize = 200;

/// Why `value` may not be one path component built from an address, or `Ok` when it may.
/// The reason is for the log.
pub fn check_component(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        Err("empty")
    } else if value.starts_with('.') {
        Err("starts with '.'")
    } else if value.contains("..") {
        Err("contains \"..\"")
    } else if value.contains('/') {
        Err("contains '/'")
    } else if value.contains('\\') {
        Err("contains '\\'")
    } else if value.chars().any(char::is_control) {
        Err("contains a NUL or control character")
    } else {
        Ok(())
    }
}

/// True when [`check_component`] accepts `value`.
pub fn is_safe_component(value: &str) -> bool {
    check_component(value).is_ok()
}

/// Why a `+detail` may not name a folder (in any store), or `Ok` when it may: the
/// [`check_component`] rule plus the [`MAX_DETAIL`] length bound.
pub fn check_detail(detail: &str) -> Result<(), &'static str> {
    if detail.len() > MAX_DETAIL {
        Err("too long")
    } else {
        check_component(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values_are_safe() {
        for v in [
            "alice",
            "alice@example.org",
            "a.b",
            "Lists.Rust",
            "x-y_z+1",
            "usér",
            "a.",
            "~",
        ] {
            assert_eq!(check_component(v), Ok(()), "{v:?}");
            assert_eq!(check_detail(v), Ok(()), "{v:?}");
        }
    }

    #[test]
    fn empty_is_refused() {
        assert_eq!(check_component(""), Err("empty"));
        assert_eq!(check_detail(""), Err("empty"));
        assert!(!is_safe_component(""));
    }

    #[test]
    fn dot_and_dot_dot_are_refused() {
        for v in [".", ".."] {
            assert!(check_component(v).is_err(), "{v:?}");
            assert!(check_detail(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn a_leading_dot_is_refused() {
        for v in [".hidden", ".Lists", "..x"] {
            assert_eq!(check_component(v), Err("starts with '.'"), "{v:?}");
            assert_eq!(check_detail(v), Err("starts with '.'"), "{v:?}");
        }
    }

    #[test]
    fn dot_dot_anywhere_is_refused() {
        for v in ["a..b", "a..", "x/../y"] {
            assert!(check_component(v).is_err(), "{v:?}");
        }
        assert_eq!(check_component("a..b"), Err("contains \"..\""));
    }

    #[test]
    fn a_slash_is_refused() {
        for v in ["a/b", "a/", "/etc"] {
            assert!(check_component(v).is_err(), "{v:?}");
            assert!(check_detail(v).is_err(), "{v:?}");
        }
        assert_eq!(check_component("a/b"), Err("contains '/'"));
    }

    #[test]
    fn a_backslash_is_refused() {
        assert_eq!(check_component("a\\b"), Err("contains '\\'"));
        assert_eq!(check_detail("\\x"), Err("contains '\\'"));
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        for v in [
            "a\0b",
            "a\nb",
            "a\rb",
            "a\tb",
            "\u{1b}[0m",
            "a\u{7f}",
            "a\u{85}b",
        ] {
            assert_eq!(
                check_component(v),
                Err("contains a NUL or control character"),
                "{v:?}"
            );
            assert!(check_detail(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn a_detail_has_a_length_bound_and_a_component_has_none() {
        let max = "d".repeat(MAX_DETAIL);
        assert_eq!(check_detail(&max), Ok(()));
        let over = "d".repeat(MAX_DETAIL + 1);
        assert_eq!(check_detail(&over), Err("too long"));
        // Path templates and the directory apply no bound of their own: the file system
        // reports a name that is too long when the path is used.
        assert_eq!(check_component(&over), Ok(()));
    }

    #[test]
    fn the_detail_bound_counts_bytes() {
        let wide = "é".repeat(MAX_DETAIL / 2 + 1);
        assert!(wide.chars().count() <= MAX_DETAIL);
        assert_eq!(check_detail(&wide), Err("too long"));
    }
}
