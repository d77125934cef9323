//! Quota policy as data: the over-quota reply (`quota_full`), the grace a message may
//! overshoot by (`quota_grace`), the usage thresholds that send a warning (`quota_warning`),
//! each resolved per user, then per domain, then globally; and the rewriting of a store's
//! over-quota refusal into the recipient's own choice of reply.

use lmtpd_store::{DeliveryError, Enhanced, Quota};

use crate::config::parse_size;

/// How far a message that starts below the byte limit may end above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grace {
    /// A fixed number of bytes (`quota_grace = 10M`).
    Bytes(u64),
    /// A share of the byte limit (`quota_grace = 5%`), 0..=100.
    Percent(u8),
}

impl Default for Grace {
    fn default() -> Self {
        Grace::Bytes(0)
    }
}

impl Grace {
    /// Parses `SIZE` (`10M`, `0`) or `PERCENT` (`5%`, at most 100 %).
    pub fn parse(text: &str) -> Result<Grace, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            return p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .map(Grace::Percent)
                .ok_or_else(|| format!("'{text}' is not a percentage from 0% to 100%"));
        }
        parse_size(t)
            .map(Grace::Bytes)
            .map_err(|_| format!("'{text}' is not a size (10M) or a percentage (5%)"))
    }

    /// The grace in bytes for a byte limit (0 without one).
    pub fn bytes(self, limit: Option<u64>) -> u64 {
        match (self, limit) {
            (_, None) => 0,
            (Grace::Bytes(b), Some(_)) => b,
            (Grace::Percent(p), Some(l)) => {
                u64::try_from(u128::from(l) * u128::from(p) / 100).unwrap_or(u64::MAX)
            }
        }
    }

    /// Configuration syntax (`lmtpd -n`).
    pub fn show(self) -> String {
        match self {
            Grace::Bytes(b) => b.to_string(),
            Grace::Percent(p) => format!("{p}%"),
        }
    }
}

/// The usage thresholds that send a quota warning, in per cent of a limit, ascending and
/// without repeats (`quota_warning = 80% 95%`); empty sends none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warnings(pub Vec<u8>);

impl Warnings {
    /// Parses percentages separated by spaces or commas (`80% 95%`, `80%,95%`); `none` or
    /// an empty value is no warning.
    pub fn parse(text: &str) -> Result<Warnings, String> {
        let t = text.trim();
        if t.is_empty() || t == "none" {
            return Ok(Warnings::default());
        }
        let mut levels = Vec::new();
        for word in t.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
            let p = word
                .strip_suffix('%')
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| {
                    format!(
                        "'{word}' is not a percentage from 1% to 100% (quota_warning = 80% 95%)"
                    )
                })?;
            levels.push(p);
        }
        levels.sort_unstable();
        levels.dedup();
        Ok(Warnings(levels))
    }

    /// Configuration syntax (`80% 95%`, or `none`).
    pub fn show(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let all: Vec<String> = self.0.iter().map(|p| format!("{p}%")).collect();
        all.join(" ")
    }

    /// The highest threshold `used` of `limit` has reached (0: none).
    pub fn level(&self, used: u64, limit: Option<u64>) -> u8 {
        let Some(limit) = limit.filter(|l| *l > 0) else {
            return 0;
        };
        let pct = u128::from(used) * 100 / u128::from(limit);
        self.0
            .iter()
            .copied()
            .filter(|p| u128::from(*p) <= pct)
            .max()
            .unwrap_or(0)
    }
}

/// The policy attributes one users-file line (a user's or an `@domain` line) sets; `None`
/// inherits from the next level (user, then domain, then the configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// `quota=`: `Some(None)` is an explicit `quota=0` (unlimited).
    pub bytes: Option<Option<u64>>,
    /// `quota_messages=`.
    pub messages: Option<Option<u64>>,
    /// `quota_full=tempfail|permfail`.
    pub permfail: Option<bool>,
    /// `quota_grace=`.
    pub grace: Option<Grace>,
    /// `quota_warning=80%,95%`.
    pub warnings: Option<Warnings>,
}

impl Attrs {
    /// Reads one `key=value` attribute; `Ok(false)` when `key` is not a quota attribute.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "quota" => self.bytes = Some(Some(parse_size(value)?).filter(|&n| n > 0)),
            "quota_messages" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| format!("quota_messages '{value}' is not a number"))?;
                self.messages = Some(Some(n).filter(|&n| n > 0));
            }
            "quota_full" => {
                self.permfail = Some(match value {
                    "tempfail" => false,
                    "permfail" => true,
                    _ => return Err(format!("quota_full '{value}' is not tempfail or permfail")),
                })
            }
            "quota_grace" => self.grace = Some(Grace::parse(value)?),
            "quota_warning" => self.warnings = Some(Warnings::parse(value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `self` with every unset attribute taken from `below`.
    pub fn or(&self, below: &Attrs) -> Attrs {
        Attrs {
            bytes: self.bytes.or(below.bytes),
            messages: self.messages.or(below.messages),
            permfail: self.permfail.or(below.permfail),
            grace: self.grace.or(below.grace),
            warnings: self.warnings.clone().or_else(|| below.warnings.clone()),
        }
    }
}

/// The global defaults (`quota_full`, `quota_grace`, `quota_warning`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    /// `quota_full = permfail`.
    pub permfail: bool,
    /// `quota_grace`.
    pub grace: Grace,
    /// `quota_warning`.
    pub warnings: Warnings,
}

/// A recipient's resolved quota policy (the limits themselves are in its [`Quota`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Over quota is `552 5.2.2` (true) or `452 4.2.2` (false).
    pub permfail: bool,
    /// The warning thresholds.
    pub warnings: Warnings,
}

/// Resolves `attrs` (already merged user over domain) against the global defaults: the
/// recipient's limits with their grace in bytes, and its policy.
pub fn resolve(attrs: &Attrs, defaults: &Defaults) -> (Quota, Policy) {
    let bytes = attrs.bytes.flatten();
    let mut quota = Quota {
        bytes,
        messages: attrs.messages.flatten(),
        ..Quota::default()
    };
    quota.grace = attrs.grace.unwrap_or(defaults.grace).bytes(bytes);
    let policy = Policy {
        permfail: attrs.permfail.unwrap_or(defaults.permfail),
        warnings: attrs
            .warnings
            .clone()
            .unwrap_or_else(|| defaults.warnings.clone()),
    };
    (quota, policy)
}

/// True for a store's over-quota refusal (`452 4.2.2` or `552 5.2.2`, RFC 3463 X.2.2).
pub fn is_over_quota(e: &DeliveryError) -> bool {
    matches!(e.enhanced, Enhanced(4 | 5, 2, 2))
}

/// A store's over-quota refusal in the recipient's own choice of reply (a store answers with
/// the global `quota_full`); any other error unchanged.
pub fn apply(policy: &Policy, e: DeliveryError) -> DeliveryError {
    if !is_over_quota(&e) || (e.code >= 500) == policy.permfail {
        return e;
    }
    let source = e.source;
    let mut out = DeliveryError::over_quota(policy.permfail);
    out.text = e.text;
    out.source = source;
    out
}

/// The refusal at RCPT of a message whose declared `SIZE=` is larger than the recipient's
/// whole byte quota plus grace: it could never be stored, whatever is deleted, so it is
/// always permanent (`552 5.2.2`, RFC 1870 §6.1 and RFC 3463 X.2.2).
pub fn never_fits(quota: &Quota, declared: Option<u64>) -> Option<DeliveryError> {
    let (limit, size) = (quota.bytes?, declared?);
    quota.can_never_hold(size).then(|| {
        DeliveryError::new(
            552,
            Enhanced(5, 2, 2),
            "Message is larger than the recipient's whole quota",
        )
        .with_source(format!(
            "SIZE={size} is above the quota of {limit} bytes plus {} grace",
            quota.grace
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn grace_is_a_size_or_a_share_of_the_byte_limit() {
        assert_eq!(Grace::parse("10M").unwrap(), Grace::Bytes(10 << 20));
        assert_eq!(Grace::parse("5%").unwrap(), Grace::Percent(5));
        assert_eq!(Grace::parse("5%").unwrap().bytes(Some(1000)), 50);
        assert_eq!(Grace::parse("1K").unwrap().bytes(None), 0);
        assert!(Grace::parse("101%").is_err());
        assert!(Grace::parse("lots").is_err());
        assert_eq!(Grace::Percent(5).show(), "5%");
    }

    #[test]
    fn warnings_are_sorted_percentages_and_level_is_the_highest_reached() {
        let w = Warnings::parse("95%, 80%").unwrap();
        assert_eq!(w.0, vec![80, 95]);
        assert_eq!(w.show(), "80% 95%");
        assert_eq!(w.level(799, Some(1000)), 0);
        assert_eq!(w.level(800, Some(1000)), 80);
        assert_eq!(w.level(960, Some(1000)), 95);
        assert_eq!(w.level(960, None), 0);
        assert!(Warnings::parse("80").is_err());
        assert!(Warnings::parse("0%").is_err());
        assert_eq!(Warnings::parse("none").unwrap(), Warnings::default());
    }

    #[test]
    fn a_user_attribute_beats_the_domain_which_beats_the_configuration() {
        let mut user = Attrs::default();
        user.set("quota_grace", "1K").unwrap();
        let mut domain = Attrs::default();
        domain.set("quota_full", "permfail").unwrap();
        domain.set("quota_grace", "50%").unwrap();
        domain.set("quota", "10K").unwrap();
        let defaults = Defaults {
            warnings: Warnings(vec![90]),
            ..Defaults::default()
        };
        let (q, p) = resolve(&user.or(&domain), &defaults);
        assert_eq!(q.bytes, Some(10 << 10));
        assert_eq!(q.grace, 1 << 10);
        assert!(p.permfail);
        assert_eq!(p.warnings.0, vec![90]);
        // An explicit quota=0 on the user line is unlimited, not the domain's 10K.
        user.set("quota", "0").unwrap();
        let (q, _) = resolve(&user.or(&domain), &defaults);
        assert_eq!(q.bytes, None);
        assert_eq!(q.grace, 0);
        assert!(!Attrs::default().set("colour", "red").unwrap());
        assert!(Attrs::default().set("quota_full", "maybe").is_err());
    }

    #[test]
    fn over_quota_refusals_take_the_recipients_reply_and_others_are_unchanged() {
        let perm = Policy {
            permfail: true,
            ..Policy::default()
        };
        let e = apply(
            &perm,
            DeliveryError::over_quota(false).with_source("maildirsize"),
        );
        assert_eq!((e.code, e.enhanced), (552, Enhanced(5, 2, 2)));
        assert_eq!(e.source.as_deref(), Some("maildirsize"));
        let e = apply(&Policy::default(), DeliveryError::over_quota(true));
        assert_eq!((e.code, e.enhanced), (452, Enhanced(4, 2, 2)));
        let e = apply(&perm, DeliveryError::mailbox_busy());
        assert_eq!(e.code, 450);
    }

    #[test]
    fn only_a_declared_size_above_the_whole_quota_and_grace_never_fits() {
        let q = Quota {
            bytes: Some(1000),
            grace: 100,
            ..Quota::default()
        };
        assert!(never_fits(&q, Some(1100)).is_none());
        let e = never_fits(&q, Some(1101)).unwrap();
        assert_eq!((e.code, e.enhanced), (552, Enhanced(5, 2, 2)));
        assert!(never_fits(&q, None).is_none());
        assert!(never_fits(&Quota::default(), Some(u64::MAX)).is_none());
    }
}
