//! Recipient resolution: the users file, domain and local-part case folding, `+detail`
//! splitting, Postmaster, quota attributes, and the checks that keep an address from ever
//! becoming an unsafe path.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use lmtpd_store::path::is_safe_component;
use lmtpd_store::{DeliveryError, Enhanced, Quota, Recipient};

use crate::config::{Config, StoreKind};
use crate::proto::Mailbox;
use crate::quota::{Attrs, Defaults, Policy};

/// One line of the users file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Local part as written (lower-cased when `lowercase_localpart`).
    pub local: String,
    /// Domain, lower case.
    pub domain: String,
    /// Quota limits and policy as this line gives them (`None` inherits from the
    /// domain's `@domain` line, then from the configuration).
    pub attrs: Attrs,
    /// Store for this user; `None` = the global `store`.
    pub store: Option<StoreKind>,
    /// The user's Sieve script (`sieve=`).
    pub sieve: UserSieve,
}

impl User {
    /// `local@domain`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// A recipient the directory accepted, with the store it lives in.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// What the stores see.
    pub rcpt: Recipient,
    /// Which store delivers it.
    pub store: StoreKind,
    /// The user's own Sieve script, when the users file overrides the `sieve` template.
    pub sieve: UserSieve,
    /// The Unix account that receives the copy (`accounts = passwd`); its copies are
    /// written by the account helper as that account.
    pub account: Option<SystemAccount>,
    /// What happens when the quota is reached (the limits are in `rcpt.quota`).
    pub policy: Policy,
}

/// A Unix account a recipient resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemAccount {
    /// Login name.
    pub name: String,
    /// User id (never 0).
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Looks an account up by name (the password database; a table in tests).
pub type AccountLookup = fn(&str) -> io::Result<Option<crate::sys::Account>>;

/// Which accounts may receive mail: `min_uid` and `accounts_allow`. Checked by the directory
/// at RCPT and again by the account helper before it delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRules {
    /// Domains whose local parts are accounts, lower case.
    pub local_domains: Vec<String>,
    /// Lowest uid that receives mail.
    pub min_uid: u32,
    /// Highest uid that receives mail.
    pub max_uid: u32,
    /// Accounts below `min_uid` that receive mail all the same.
    pub allow: Vec<String>,
    /// Store of accounts without a users-file `store=`.
    pub store: StoreKind,
}

impl AccountRules {
    /// The rules of the configuration, `None` unless `accounts = passwd`.
    pub fn of(cfg: &Config) -> Option<AccountRules> {
        let a = &cfg.accounts;
        if !a.passwd {
            return None;
        }
        let mut local_domains: Vec<String> =
            a.local_domains.iter().map(|d| d.to_lowercase()).collect();
        if local_domains.is_empty() {
            local_domains = vec![cfg.delivery.hostname.to_lowercase(), "localhost".into()];
        }
        Some(AccountRules {
            local_domains,
            min_uid: u32::try_from(a.min_uid).unwrap_or(u32::MAX),
            max_uid: u32::try_from(a.max_uid).unwrap_or(u32::MAX),
            allow: a.allow.clone(),
            store: a.store,
        })
    }

    /// Why `account` may not receive mail, or `None` when it may. uid 0 never does: its
    /// mail belongs in an alias to a person, and a delivery as root could not drop root.
    pub fn refusal(&self, account: &crate::sys::Account) -> Option<String> {
        if account.uid == 0 {
            return Some(format!("{} has uid 0", account.name));
        }
        let in_range = (self.min_uid..=self.max_uid).contains(&account.uid);
        if !in_range && !self.allow.iter().any(|a| a == &account.name) {
            return Some(format!(
                "{} has uid {}, outside min_uid {} .. max_uid {}, and is not in accounts_allow",
                account.name, account.uid, self.min_uid, self.max_uid
            ));
        }
        if !is_safe_component(&account.name) {
            return Some(format!("account name {:?} cannot be a path", account.name));
        }
        if !account.home.is_absolute() {
            return Some(format!("{} has no absolute home directory", account.name));
        }
        None
    }
}

/// The users-file `sieve=` attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UserSieve {
    /// No attribute: the `sieve` template of the configuration.
    #[default]
    Template,
    /// `sieve=PATH`: this script (an absolute path).
    Path(std::path::PathBuf),
    /// `sieve=none`: no per-user script (global scripts still run).
    Off,
}

/// The users table plus the address rules from the configuration.
#[derive(Clone, Debug)]
pub struct Directory {
    users: HashMap<String, User>,
    delimiters: Vec<char>,
    lowercase_localpart: bool,
    default_store: StoreKind,
    postmaster: String,
    accounts: Option<AccountRules>,
    lookup: AccountLookup,
    /// `@domain` lines: the quota defaults of each domain.
    domains: HashMap<String, Attrs>,
    /// The configuration's quota defaults.
    defaults: Defaults,
}

/// `550 5.1.3`: an address that would be unsafe as a path component.
fn unsafe_address() -> DeliveryError {
    DeliveryError::new(
        550,
        Enhanced(5, 1, 3),
        "Bad destination mailbox address syntax",
    )
}

/// A problem with the users file, in the words `lmtpd` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsersError {
    /// The file cannot be read.
    Unreadable {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A line that is refused: not an address, an unsafe one, a bad attribute, a repeat.
    Line {
        /// The file (or other source) of the line.
        origin: String,
        /// The line number, from 1.
        line: usize,
        /// Why it is refused.
        reason: String,
    },
}

impl std::fmt::Display for UsersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsersError::Unreadable { path, reason } => {
                write!(f, "{path}: cannot read users file: {reason}")
            }
            UsersError::Line {
                origin,
                line,
                reason,
            } => write!(f, "{origin}:{line}: {reason}"),
        }
    }
}

impl std::error::Error for UsersError {}

impl Directory {
    /// Parses users-file text; every bad line is reported with its number.
    pub fn parse(text: &str, origin: &str, cfg: &Config) -> Result<Directory, Vec<UsersError>> {
        let mut dir = Directory {
            users: HashMap::new(),
            delimiters: cfg.recipients.recipient_delimiter.chars().collect(),
            lowercase_localpart: cfg.recipients.lowercase_localpart,
            default_store: cfg.delivery.store,
            postmaster: cfg.recipients.postmaster.clone(),
            accounts: AccountRules::of(cfg),
            lookup: crate::sys::lookup_user,
            domains: HashMap::new(),
            defaults: Defaults {
                permfail: cfg.delivery.quota_permfail,
                grace: cfg.delivery.quota_grace,
                warnings: cfg.delivery.quota_warning.clone(),
            },
        };
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let refused = |reason: String| UsersError::Line {
                origin: origin.into(),
                line: lineno,
                reason,
            };
            if let Some(rest) = line.strip_prefix('@') {
                match parse_domain_line(rest) {
                    Ok((domain, attrs)) => {
                        if dir.domains.insert(domain.clone(), attrs).is_some() {
                            errors.push(refused(format!("@{domain} is listed twice")));
                        }
                    }
                    Err(e) => errors.push(refused(e)),
                }
                continue;
            }
            match dir.parse_line(line) {
                Ok(user) if dir.is_account_line(&user) && matches!(user.sieve, UserSieve::Path(_)) => {
                    errors.push(refused(format!(
                        "{}: sieve=PATH cannot name a system account's script (it is read as the account from account_sieve); use sieve=none or leave it out",
                        user.address()
                    )))
                }
                Ok(user) => {
                    let key = user.address();
                    match dir.users.entry(key) {
                        std::collections::hash_map::Entry::Occupied(e) => {
                            errors.push(refused(format!("{} is listed twice", e.key())))
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(user);
                        }
                    }
                }
                Err(e) => errors.push(refused(e)),
            }
        }
        if errors.is_empty() {
            Ok(dir)
        } else {
            Err(errors)
        }
    }

    /// Reads and parses the users file named in the configuration.
    pub fn load(cfg: &Config) -> Result<Directory, Vec<UsersError>> {
        let path: &Path = &cfg.recipients.users;
        let text = fs::read_to_string(path).map_err(|e| {
            vec![UsersError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            }]
        })?;
        Directory::parse(&text, &path.display().to_string(), cfg)
    }

    fn parse_line(&self, line: &str) -> Result<User, String> {
        let mut words = line.split_whitespace();
        let addr = words.next().unwrap_or_default();
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return Err(format!("'{addr}' is not an address (user@domain)"));
        };
        if !is_safe_component(local) || !is_safe_component(domain) {
            return Err(format!(
                "'{addr}' cannot be a mailbox (no '/', '..', control characters or leading dot)"
            ));
        }
        if local.contains(&self.delimiters[..]) {
            log::debug!("users file entry {addr} contains the recipient delimiter");
        }
        let mut user = User {
            local: self.fold_local(local),
            domain: domain.to_lowercase(),
            attrs: Attrs::default(),
            store: None,
            sieve: UserSieve::Template,
        };
        for word in words {
            let Some((k, v)) = word.split_once('=') else {
                return Err(format!("'{word}' is not key=value"));
            };
            match k {
                "store" => user.store = Some(StoreKind::parse(v)?),
                "sieve" => user.sieve = parse_user_sieve(v)?,
                _ => {
                    if !user.attrs.set(k, v)? {
                        return Err(format!("unknown attribute '{k}' ({USER_ATTRS})"));
                    }
                }
            }
        }
        Ok(user)
    }

    fn fold_local(&self, local: &str) -> String {
        if self.lowercase_localpart {
            local.to_lowercase()
        } else {
            local.to_string()
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the users file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// All users (for `lmtpd -t` and start-up checks).
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Counts users added, removed and changed (quota or store) from `self` to `new`.
    pub fn diff(&self, new: &Directory) -> (usize, usize, usize) {
        let added = new
            .users
            .keys()
            .filter(|k| !self.users.contains_key(*k))
            .count();
        let removed = self
            .users
            .keys()
            .filter(|k| !new.users.contains_key(*k))
            .count();
        let changed = new
            .users
            .iter()
            .filter(|(k, u)| self.users.get(*k).is_some_and(|old| old != *u))
            .count();
        (added, removed, changed)
    }

    /// Resolves a forward-path to a user of this server, or says why not:
    /// `550 5.1.1` unknown, `550 5.1.3` unsafe as a path.
    pub fn resolve(&self, mailbox: &Mailbox) -> Result<Resolved, DeliveryError> {
        let address = mailbox.to_string();
        let (local, domain) = match &mailbox.domain {
            Some(d) => (mailbox.local.as_str(), d.to_lowercase()),
            None if mailbox.is_postmaster() => return self.resolve_postmaster(address),
            None => return Err(DeliveryError::unknown_user()),
        };
        if !is_safe_component(local) || !is_safe_component(&domain) {
            return Err(unsafe_address());
        }
        if let Some(rules) = &self.accounts {
            if rules.local_domains.contains(&domain) {
                return self.resolve_account(mailbox, address, domain, rules);
            }
        }
        let (user, detail) = self.with_detail(&mailbox.local, |l| {
            Ok(self.users.get(&format!("{l}@{domain}")))
        })?;
        Ok(self.recipient(user, address, detail))
    }

    /// Looks a local part up with `find` (given it folded): whole first, else the part
    /// before the first delimiter, with the rest as the `+detail` (checked as a path
    /// component). The split is made in the local part as the client sent it, so the detail
    /// keeps its case (folder lookup matches case) and folding cannot shift the split point.
    fn with_detail<T>(
        &self,
        local: &str,
        find: impl Fn(&str) -> Result<Option<T>, DeliveryError>,
    ) -> Result<(T, Option<String>), DeliveryError> {
        if let Some(found) = find(&self.fold_local(local))? {
            return Ok((found, None));
        }
        let Some(pos) = local.find(&self.delimiters[..]) else {
            return Err(DeliveryError::unknown_user());
        };
        let (base, rest) = local.split_at(pos);
        let detail = &rest[rest.chars().next().map_or(0, char::len_utf8)..];
        let found = find(&self.fold_local(base))?.ok_or_else(DeliveryError::unknown_user)?;
        if detail.is_empty() {
            Ok((found, None))
        } else if is_safe_component(detail) {
            Ok((found, Some(detail.to_string())))
        } else {
            Err(unsafe_address())
        }
    }

    /// True for a users-file line that describes a system account (its domain is one of
    /// the `local_domains` under `accounts = passwd`) rather than a virtual user.
    pub fn is_account_line(&self, user: &User) -> bool {
        self.accounts
            .as_ref()
            .is_some_and(|r| r.local_domains.contains(&user.domain))
    }

    /// The account-resolution rules, when `accounts = passwd`.
    pub fn account_rules(&self) -> Option<&AccountRules> {
        self.accounts.as_ref()
    }

    /// Uses `lookup` instead of the password database (tests).
    pub fn with_lookup(mut self, lookup: AccountLookup) -> Directory {
        self.lookup = lookup;
        self
    }

    /// A recipient in a local domain: its local part (folded, without `+detail`) names a
    /// Unix account. A users-file line for the same address adds quota and store.
    fn resolve_account(
        &self,
        mailbox: &Mailbox,
        address: String,
        domain: String,
        rules: &AccountRules,
    ) -> Result<Resolved, DeliveryError> {
        let find = |name: &str| -> Result<Option<crate::sys::Account>, DeliveryError> {
            if !is_safe_component(name) {
                return Err(unsafe_address());
            }
            (self.lookup)(name).map_err(|e| {
                DeliveryError::local_error().with_source(format!("looking up account {name}: {e}"))
            })
        };
        let (account, detail) = self.with_detail(&mailbox.local, find)?;
        if let Some(why) = rules.refusal(&account) {
            log::info!("recipient {address} refused: {why}");
            return Err(DeliveryError::unknown_user().with_source(why));
        }
        let user = format!("{}@{domain}", account.name);
        let line = self.users.get(&user);
        let store = line.and_then(|u| u.store).unwrap_or(rules.store);
        let (quota, policy) = self.quota_of(line.map(|u| &u.attrs), &domain);
        Ok(Resolved {
            rcpt: Recipient {
                address,
                user,
                local: account.name.clone(),
                domain,
                detail,
                quota,
                orcpt: None,
            },
            policy,
            store,
            // The account's own script is read by the account helper, as the account, from
            // the account_sieve template; `sieve=none` on its users-file line switches it off.
            sieve: match line.map(|u| &u.sieve) {
                Some(UserSieve::Off) => UserSieve::Off,
                _ => UserSieve::Template,
            },
            account: Some(SystemAccount {
                name: account.name,
                uid: account.uid,
                gid: account.gid,
                home: account.home,
            }),
        })
    }

    fn resolve_postmaster(&self, address: String) -> Result<Resolved, DeliveryError> {
        let user = if self.postmaster.is_empty() {
            let mut found: Vec<&User> = self
                .users
                .values()
                .filter(|u| u.local.eq_ignore_ascii_case("postmaster"))
                .collect();
            found.sort_by(|a, b| a.domain.cmp(&b.domain));
            found.first().copied()
        } else {
            let (l, d) = self
                .postmaster
                .rsplit_once('@')
                .unwrap_or((self.postmaster.as_str(), ""));
            self.users
                .get(&format!("{}@{}", self.fold_local(l), d.to_lowercase()))
        };
        user.map(|u| self.recipient(u, address, None))
            .ok_or_else(DeliveryError::unknown_user)
    }

    /// A user's limits and policy: its line's attributes over its domain's `@domain` line
    /// over the configuration.
    fn quota_of(&self, attrs: Option<&Attrs>, domain: &str) -> (Quota, Policy) {
        let none = Attrs::default();
        let domain = self.domains.get(domain).unwrap_or(&none);
        crate::quota::resolve(&attrs.unwrap_or(&none).or(domain), &self.defaults)
    }

    fn recipient(&self, user: &User, address: String, detail: Option<String>) -> Resolved {
        let (quota, policy) = self.quota_of(Some(&user.attrs), &user.domain);
        Resolved {
            rcpt: Recipient {
                address,
                user: user.address(),
                local: user.local.clone(),
                domain: user.domain.clone(),
                detail,
                quota,
                orcpt: None,
            },
            policy,
            store: user.store.unwrap_or(self.default_store),
            sieve: user.sieve.clone(),
            account: None,
        }
    }
}

/// The attributes a users-file line may carry, for refusals.
const USER_ATTRS: &str =
    "quota, quota_messages, quota_full, quota_grace, quota_warning, store, sieve";

/// An `@domain attr=value ...` line: the quota defaults of the domain's users (`quota`,
/// `quota_messages`, `quota_full`, `quota_grace`, `quota_warning`).
fn parse_domain_line(rest: &str) -> Result<(String, Attrs), String> {
    let mut words = rest.split_whitespace();
    let domain = words.next().unwrap_or_default().to_lowercase();
    if domain.is_empty() || !is_safe_component(&domain) || domain.contains('@') {
        return Err(format!(
            "'@{domain}' is not a domain line (@example.org quota=1G ...)"
        ));
    }
    let mut attrs = Attrs::default();
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!("'{word}' is not key=value"));
        };
        if !attrs.set(k, v)? {
            return Err(format!(
                "'{k}' cannot be set for a whole domain (quota, quota_messages, quota_full, quota_grace, quota_warning)"
            ));
        }
    }
    Ok((domain, attrs))
}

/// `sieve=none` or `sieve=/absolute/path`.
fn parse_user_sieve(v: &str) -> Result<UserSieve, String> {
    if v == "none" {
        return Ok(UserSieve::Off);
    }
    let path = std::path::Path::new(v);
    if !path.is_absolute() || v.chars().any(char::is_control) {
        return Err(format!("sieve '{v}' is neither none nor an absolute path"));
    }
    Ok(UserSieve::Path(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(text: &str) -> Directory {
        Directory::parse(text, "users", &Config::default()).expect("valid users file")
    }

    fn mb(local: &str, domain: Option<&str>) -> Mailbox {
        Mailbox {
            local: local.into(),
            domain: domain.map(Into::into),
        }
    }

    #[test]
    fn users_file_attributes_parse() {
        let d = dir("# c\nalice@example.org\nfull@example.org quota=1K\nbob@Example.ORG quota=2G quota_messages=100000\n");
        assert_eq!(d.len(), 3);
        let bob = d.resolve(&mb("bob", Some("example.org"))).expect("bob");
        assert_eq!(bob.rcpt.quota.bytes, Some(2 << 30));
        assert_eq!(bob.rcpt.quota.messages, Some(100_000));
        assert_eq!(bob.rcpt.domain, "example.org");
    }

    #[test]
    fn users_file_errors_have_line_numbers() {
        let errs = Directory::parse(
            "ok@x\nnot-an-address\nbad@x quota=lots\nok@x\n../x@y\nz@x color=red\n",
            "u",
            &Config::default(),
        )
        .expect_err("invalid");
        assert_eq!(errs.len(), 5, "{errs:?}");
        let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(errs[0].starts_with("u:2:"));
        assert!(errs[3].starts_with("u:5:"));
        assert_eq!(errs[2], "u:4: ok@x is listed twice");
    }

    #[test]
    fn domains_compare_case_insensitively_and_local_parts_fold() {
        let d = dir("alice@example.org\n");
        assert!(d.resolve(&mb("ALICE", Some("EXAMPLE.org"))).is_ok());
        let mut cfg = Config::default();
        cfg.recipients.lowercase_localpart = false;
        let strict = Directory::parse("alice@example.org\n", "u", &cfg).expect("valid");
        assert!(strict.resolve(&mb("Alice", Some("example.org"))).is_err());
        assert!(strict.resolve(&mb("alice", Some("Example.Org"))).is_ok());
    }

    #[test]
    fn detail_is_split_at_the_delimiter() {
        let d = dir("alice@example.org\n");
        let r = d
            .resolve(&mb("alice+Lists", Some("example.org")))
            .expect("ok");
        assert_eq!(r.rcpt.user, "alice@example.org");
        assert_eq!(r.rcpt.detail.as_deref(), Some("Lists"));
        assert_eq!(r.rcpt.address, "alice+Lists@example.org");
        let r = d.resolve(&mb("alice+", Some("example.org"))).expect("ok");
        assert_eq!(r.rcpt.detail, None);
    }

    #[test]
    fn several_delimiters_are_allowed() {
        let mut cfg = Config::default();
        cfg.recipients.recipient_delimiter = "+-".into();
        let d = Directory::parse("alice@example.org\n", "u", &cfg).expect("valid");
        let r = d
            .resolve(&mb("alice-news", Some("example.org")))
            .expect("ok");
        assert_eq!(r.rcpt.detail.as_deref(), Some("news"));
    }

    #[test]
    fn unknown_user_is_550_5_1_1() {
        let d = dir("alice@example.org\n");
        let e = d
            .resolve(&mb("mallory", Some("example.org")))
            .expect_err("unknown");
        assert_eq!((e.code, e.enhanced), (550, Enhanced(5, 1, 1)));
        let e = d
            .resolve(&mb("alice", Some("other.org")))
            .expect_err("unknown");
        assert_eq!(e.code, 550);
    }

    #[test]
    fn unsafe_local_part_or_detail_is_550_5_1_3() {
        let d = dir("alice@example.org\n");
        for (l, dom) in [
            ("alice+../../etc", "example.org"),
            ("alice+a/b", "example.org"),
            ("alice+.hidden", "example.org"),
            ("../alice", "example.org"),
            ("al\u{0}ice", "example.org"),
            ("alice", "../x"),
            ("alice+x\ty", "example.org"),
        ] {
            let e = d.resolve(&mb(l, Some(dom))).expect_err(l);
            assert_eq!((e.code, e.enhanced), (550, Enhanced(5, 1, 3)), "{l:?}");
        }
    }

    #[test]
    fn diff_counts_added_removed_changed() {
        let a = dir("x@e\ny@e quota=1K\nz@e\n");
        let b = dir("x@e\ny@e quota=2K\nw@e\nv@e\n");
        assert_eq!(a.diff(&b), (2, 1, 1));
    }

    #[test]
    fn postmaster_without_domain_resolves() {
        let d = dir("postmaster@example.org\nalice@example.org\n");
        let r = d.resolve(&mb("Postmaster", None)).expect("postmaster");
        assert_eq!(r.rcpt.user, "postmaster@example.org");
        let mut cfg = Config::default();
        cfg.recipients.postmaster = "alice@example.org".into();
        let d = Directory::parse("alice@example.org\n", "u", &cfg).expect("valid");
        assert_eq!(
            d.resolve(&mb("POSTMASTER", None)).expect("pm").rcpt.user,
            "alice@example.org"
        );
    }

    fn fake_accounts(name: &str) -> io::Result<Option<crate::sys::Account>> {
        let (uid, home) = match name {
            "alice" => (1001, "/home/alice"),
            "root" => (0, "/root"),
            "daemon" => (1, "/usr/sbin"),
            "nobody" => (65534, "/nonexistent"),
            "nohome" => (1002, ""),
            "broken" => return Err(io::Error::other("NSS is down")),
            _ => return Ok(None),
        };
        Ok(Some(crate::sys::Account {
            name: name.into(),
            uid,
            gid: uid,
            home: home.into(),
        }))
    }

    fn accounts_dir(users: &str, allow: &[&str]) -> Directory {
        let mut cfg = Config::default();
        cfg.accounts.passwd = true;
        cfg.accounts.local_domains = vec!["Host.Example".into()];
        cfg.accounts.allow = allow.iter().map(|a| a.to_string()).collect();
        Directory::parse(users, "u", &cfg)
            .expect("valid")
            .with_lookup(fake_accounts)
    }

    #[test]
    fn an_account_line_can_switch_its_script_off_but_never_name_a_path() {
        let d = accounts_dir("alice@host.example sieve=none\n", &[]);
        let r = d
            .resolve(&mb("alice", Some("host.example")))
            .expect("alice");
        assert_eq!(r.sieve, UserSieve::Off);
        let mut cfg = Config::default();
        cfg.accounts.passwd = true;
        cfg.accounts.local_domains = vec!["host.example".into()];
        let errs = Directory::parse("alice@host.example sieve=/etc/evil.sieve\n", "u", &cfg)
            .expect_err("a path for an account");
        assert!(
            errs[0].to_string().contains("sieve=PATH cannot name"),
            "{errs:?}"
        );
        // The same attribute on a virtual user's line is fine.
        assert!(Directory::parse("bob@other.org sieve=/srv/bob.sieve\n", "u", &cfg).is_ok());
    }

    #[test]
    fn local_parts_in_local_domains_name_accounts_with_detail_and_users_file_attributes() {
        let d = accounts_dir(
            "alice@host.example quota=1M store=maildir\nbob@other.org\n",
            &[],
        );
        let r = d
            .resolve(&mb("Alice+Lists", Some("HOST.example")))
            .expect("alice");
        let acct = r.account.as_ref().expect("an account");
        assert_eq!((acct.name.as_str(), acct.uid), ("alice", 1001));
        assert_eq!(r.rcpt.user, "alice@host.example");
        assert_eq!(r.rcpt.detail.as_deref(), Some("Lists"));
        assert_eq!(r.rcpt.quota.bytes, Some(1 << 20));
        assert_eq!(r.store, StoreKind::Maildir);
        // The account's own script comes from account_sieve, through the helper.
        assert_eq!(r.sieve, UserSieve::Template);
        // Other domains are still virtual users of the users file.
        let bob = d.resolve(&mb("bob", Some("other.org"))).expect("bob");
        assert!(bob.account.is_none());
        // An account without a users-file line gets account_store (mbox by default).
        let d = accounts_dir("", &[]);
        assert_eq!(
            d.resolve(&mb("alice", Some("host.example")))
                .expect("alice")
                .store,
            StoreKind::Mbox
        );
    }

    #[test]
    fn root_system_ids_and_unknown_accounts_are_550_5_1_1_and_lookup_failure_is_451() {
        let d = accounts_dir("", &[]);
        for who in ["root", "daemon", "nobody", "nohome", "mallory"] {
            let e = d.resolve(&mb(who, Some("host.example"))).expect_err(who);
            assert_eq!((e.code, e.enhanced), (550, Enhanced(5, 1, 1)), "{who}");
        }
        let e = d
            .resolve(&mb("broken", Some("host.example")))
            .expect_err("nss");
        assert_eq!((e.code, e.enhanced), (451, Enhanced(4, 3, 0)));
        let e = d
            .resolve(&mb("../etc", Some("host.example")))
            .expect_err("path");
        assert_eq!((e.code, e.enhanced), (550, Enhanced(5, 1, 3)));
        // accounts_allow lets a system id below min_uid receive mail; never uid 0.
        let d = accounts_dir("", &["daemon", "root"]);
        assert!(d.resolve(&mb("daemon", Some("host.example"))).is_ok());
        assert!(d.resolve(&mb("root", Some("host.example"))).is_err());
    }
}
