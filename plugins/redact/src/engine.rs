//! The configuration and what `new` builds from it once: the compiled patterns, the rules and
//! their actions, the key lists and the hash key; and [`Engine::find`], which scans a string
//! (and the percent-decoded copy of one with `%XX` escapes) for confirmed matches.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;

use hmac::{Hmac, Mac};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use sha2::Sha256;
use sluice_sdk::Error;
use sluice_sdk::host::{self, Level};

use crate::detect::{self, Decoded, Detector, Prefilter};

/// The most bytes the reused decoded copy keeps between strings; a longer string's copy is
/// freed after its scan.
const DECODED_KEEP: usize = 64 << 10;

thread_local! {
    /// The percent-decoded copy of the string being scanned: reused rather than allocated per
    /// string, and kept outside the engine, which stays read-only while batches are processed.
    static DECODED: RefCell<Decoded> = RefCell::new(Decoded::default());
}

/// What happens to a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Mask,
    Hash,
    DropAttribute,
    DropRecord,
    Off,
}

impl Action {
    pub const NAMES: &'static [&'static str] =
        &["mask", "hash", "drop_attribute", "drop_record", "off"];

    pub fn name(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Hash => "hash",
            Action::DropAttribute => "drop_attribute",
            Action::DropRecord => "drop_record",
            Action::Off => "off",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Some(match name {
            "mask" => Action::Mask,
            "hash" => Action::Hash,
            "drop_attribute" => Action::DropAttribute,
            "drop_record" => Action::DropRecord,
            "off" => Action::Off,
            _ => return None,
        })
    }

    /// The index of an applied action in a rule's counters (`off` is never applied).
    pub fn counter(self) -> usize {
        match self {
            Action::Mask | Action::Off => 0,
            Action::Hash => 1,
            Action::DropAttribute => 2,
            Action::DropRecord => 3,
        }
    }

    /// The actions in counter order.
    pub const COUNTED: [Action; 4] = [
        Action::Mask,
        Action::Hash,
        Action::DropAttribute,
        Action::DropRecord,
    ];
}

impl<'de> serde::Deserialize<'de> for Action {
    /// An action's name; `false` also means `off` and `true` `mask`, for YAML that reads
    /// `ipv4: off` as a boolean.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Action;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one of mask, hash, drop_attribute, drop_record, off")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Action, E> {
                Action::from_name(v).ok_or_else(|| E::unknown_variant(v, Action::NAMES))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Action, E> {
                Ok(if v { Action::Mask } else { Action::Off })
            }
        }
        d.deserialize_any(V)
    }
}

/// The plugin's `config:` block.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per built-in detector: its action (every detector is `mask` unless set).
    #[serde(default)]
    pub detectors: DetectorActions,
    /// Custom regex rules.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What `mask` writes in place of a match.
    #[serde(default)]
    pub mask: Option<String>,
    /// HMAC keys by id.
    #[serde(default)]
    pub hash_keys: BTreeMap<String, String>,
    /// The id of the key `hash` uses (may be left out when there is one key).
    #[serde(default)]
    pub hash_key: Option<String>,
    /// Attribute keys never touched.
    #[serde(default)]
    pub allow_keys: Vec<String>,
    /// Attribute keys always dropped.
    #[serde(default)]
    pub block_keys: Vec<String>,
    /// More key names for the `secret_keys` detector, on top of the built-in ones.
    #[serde(default)]
    pub secret_key_names: Vec<String>,
}

/// `detectors:` — one optional action per built-in detector.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorActions {
    #[serde(default)]
    pub email: Option<Action>,
    #[serde(default)]
    pub credit_card: Option<Action>,
    #[serde(default)]
    pub iban: Option<Action>,
    #[serde(default)]
    pub ipv4: Option<Action>,
    #[serde(default)]
    pub ipv6: Option<Action>,
    #[serde(default)]
    pub jwt: Option<Action>,
    #[serde(default)]
    pub bearer: Option<Action>,
    #[serde(default)]
    pub aws_access_key: Option<Action>,
    #[serde(default)]
    pub secret_keys: Option<Action>,
    #[serde(default)]
    pub url_secrets: Option<Action>,
    #[serde(default)]
    pub phone: Option<Action>,
    #[serde(default)]
    pub private_key: Option<Action>,
    #[serde(default)]
    pub saas_tokens: Option<Action>,
    #[serde(default)]
    pub national_id: Option<Action>,
}

impl DetectorActions {
    fn get(&self, d: Detector) -> Action {
        let a = match d {
            Detector::Email => self.email,
            Detector::CreditCard => self.credit_card,
            Detector::Iban => self.iban,
            Detector::Ipv4 => self.ipv4,
            Detector::Ipv6 => self.ipv6,
            Detector::Jwt => self.jwt,
            Detector::Bearer => self.bearer,
            Detector::AwsAccessKey => self.aws_access_key,
            Detector::SecretKeys => self.secret_keys,
            Detector::UrlSecrets => self.url_secrets,
            Detector::Phone => self.phone,
            Detector::PrivateKey => self.private_key,
            Detector::SaasTokens => self.saas_tokens,
            Detector::NationalId => self.national_id,
        };
        a.unwrap_or(Action::Mask)
    }
}

/// One entry of `rules:`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub pattern: String,
    #[serde(default = "default_rule_action")]
    pub action: Action,
}

fn default_rule_action() -> Action {
    Action::Mask
}

pub const DEFAULT_MASK: &str = "[REDACTED]";

/// Attribute key names whose whole value is a secret (compared normalised, and also matching as
/// the last segments of a key: `db.password`, `http.request.header.authorization`).
pub const SECRET_KEY_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set_cookie",
    "private_key",
    "secret_key",
    "secret_access_key",
    "credentials",
    "credential",
    "connection_string",
];

/// The name of the counter's rule for `block_keys`.
pub const BLOCK_RULE: &str = "block_keys";

/// A rule: a built-in detector, a custom rule or the block list; its id is its index.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub action: Action,
}

/// A compiled pattern in the set, with what confirms its matches.
#[derive(Debug)]
struct Matcher {
    rule: usize,
    regex: Regex,
    /// The capture group to redact (0: the whole match).
    group: usize,
    detector: Option<Detector>,
}

/// A confirmed match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub range: Range<usize>,
    pub rule: usize,
}

/// How an attribute key is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    Allow,
    Block,
    Secret,
    Plain,
}

struct HashKey {
    id: String,
    mac: Hmac<Sha256>,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("HashKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Everything `new` builds once; read-only while batches are processed.
#[derive(Debug)]
pub struct Engine {
    pub rules: Vec<Rule>,
    /// The rule id of `block_keys`.
    pub block_rule: usize,
    /// The rule id of `secret_keys`, when it is on.
    pub secret_rule: Option<usize>,
    set: Option<RegexSet>,
    matchers: Vec<Matcher>,
    /// The enabled built-in detectors that look at values, as [`Detector::bit`]s.
    detector_bits: u16,
    /// Whether any custom rule is on (they have no byte pre-check).
    custom: bool,
    pub mask: String,
    hash: Option<HashKey>,
    allow: HashSet<Vec<u8>>,
    block: HashSet<Vec<u8>>,
    secret_names: Vec<Vec<u8>>,
    /// The last two normalised bytes of every listed or secret key name, as a bitset over
    /// [`detect::key_tail`]: a key whose tail is not in it is plain without further look-ups.
    /// `None` when a name is too short for the filter.
    key_tails: Option<Box<[u64]>>,
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

fn normalized(key: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len());
    detect::normalize_key(key, &mut v);
    v
}

impl Engine {
    pub fn new(config: Config) -> Result<Engine, Error> {
        let mut rules: Vec<Rule> = Detector::ALL
            .iter()
            .map(|d| Rule {
                name: d.name().to_string(),
                action: config.detectors.get(*d),
            })
            .collect();
        let mut matchers = Vec::new();
        for (id, d) in Detector::ALL.iter().enumerate() {
            let (Some(pattern), true) = (d.pattern(), rules[id].action != Action::Off) else {
                continue;
            };
            let regex = RegexBuilder::new(pattern)
                .dfa_size_limit(1 << 20)
                .build()
                .map_err(|e| Error::Internal(format!("detector {}: {e}", d.name())))?;
            matchers.push(Matcher {
                rule: id,
                regex,
                group: d.group(),
                detector: Some(*d),
            });
        }
        let detector_bits = matchers
            .iter()
            .filter_map(|m| m.detector)
            .fold(0, |bits, d| bits | d.bit());

        let mut custom = false;
        for (i, r) in config.rules.iter().enumerate() {
            let name = r.name.trim();
            if name.is_empty() {
                return Err(config_error(format!("rules[{i}]: name is empty")));
            }
            if name == BLOCK_RULE || rules.iter().any(|x| x.name == name) {
                return Err(config_error(format!(
                    "rules[{i}] `{name}`: the name is already used by a detector or another rule"
                )));
            }
            let regex = RegexBuilder::new(&r.pattern)
                .dfa_size_limit(1 << 20)
                .build()
                .map_err(|e| config_error(format!("rules[{i}] `{name}`: invalid pattern: {e}")))?;
            if regex.is_match("") {
                return Err(config_error(format!(
                    "rules[{i}] `{name}`: the pattern matches the empty string"
                )));
            }
            let group = regex
                .capture_names()
                .position(|n| n == Some("redact"))
                .unwrap_or(0);
            let id = rules.len();
            rules.push(Rule {
                name: name.to_string(),
                action: r.action,
            });
            if r.action != Action::Off {
                custom = true;
                matchers.push(Matcher {
                    rule: id,
                    regex,
                    group,
                    detector: None,
                });
            }
        }
        let block_rule = rules.len();
        rules.push(Rule {
            name: BLOCK_RULE.to_string(),
            action: Action::DropAttribute,
        });

        let set = if matchers.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(matchers.iter().map(|m| m.regex.as_str()))
                    .dfa_size_limit(4 << 20)
                    .build()
                    .map_err(|e| config_error(format!("rules: {e}")))?,
            )
        };

        // Hashing: the key must exist before any rule may hash.
        for (id, secret) in &config.hash_keys {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
            {
                return Err(config_error(format!(
                    "hash_keys: key id `{id}` must be letters, digits, `_`, `-` or `.`"
                )));
            }
            if secret.is_empty() {
                return Err(config_error(format!("hash_keys.{id}: the secret is empty")));
            }
            if secret.len() < 16 {
                host::log(
                    Level::Warn,
                    &format!(
                        "hash_keys.{id}: a secret of {} bytes is short; use at least 32 random bytes",
                        secret.len()
                    ),
                );
            }
        }
        let active = match (&config.hash_key, config.hash_keys.len()) {
            (Some(id), _) => Some(id.clone()),
            (None, 1) => config.hash_keys.keys().next().cloned(),
            (None, _) => None,
        };
        let hash = match active {
            None => None,
            Some(id) => {
                let secret = config.hash_keys.get(&id).ok_or_else(|| {
                    config_error(format!("hash_key: `{id}` is not one of hash_keys"))
                })?;
                let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                    .map_err(|e| config_error(format!("hash_keys.{id}: {e}")))?;
                Some(HashKey { id, mac })
            }
        };
        if hash.is_none()
            && let Some(r) = rules.iter().find(|r| r.action == Action::Hash)
        {
            return Err(config_error(format!(
                "`{}` uses the hash action but no hash key is configured: set hash_keys (and hash_key when there are several)",
                r.name
            )));
        }

        let allow: HashSet<Vec<u8>> = config.allow_keys.iter().map(|k| normalized(k)).collect();
        let block: HashSet<Vec<u8>> = config.block_keys.iter().map(|k| normalized(k)).collect();
        if let Some(k) = config
            .block_keys
            .iter()
            .find(|k| allow.contains(&normalized(k)))
        {
            return Err(config_error(format!(
                "`{k}` is in both allow_keys and block_keys"
            )));
        }
        let secret_rule = (rules[Detector::SecretKeys as usize].action != Action::Off)
            .then_some(Detector::SecretKeys as usize);
        let secret_names: Vec<Vec<u8>> = SECRET_KEY_NAMES
            .iter()
            .copied()
            .chain(config.secret_key_names.iter().map(String::as_str))
            .map(normalized)
            .filter(|n| !n.is_empty())
            .collect();

        let mut key_tails = Some(vec![0u64; 1 << 10].into_boxed_slice());
        let secret_names_in_use: &[Vec<u8>] = if secret_rule.is_some() {
            &secret_names
        } else {
            &[]
        };
        for name in allow.iter().chain(&block).chain(secret_names_in_use) {
            match (name.len() >= 2, key_tails.as_mut()) {
                (true, Some(bits)) => {
                    let tail = usize::from(u16::from_be_bytes([
                        name[name.len() - 2],
                        name[name.len() - 1],
                    ]));
                    if let Some(word) = bits.get_mut(tail / 64) {
                        *word |= 1 << (tail % 64);
                    }
                }
                (false, _) => key_tails = None,
                (true, None) => {}
            }
        }

        Ok(Engine {
            rules,
            block_rule,
            secret_rule,
            set,
            matchers,
            detector_bits,
            custom,
            mask: config.mask.unwrap_or_else(|| DEFAULT_MASK.to_string()),
            hash,
            allow,
            block,
            secret_names,
            key_tails,
        })
    }

    /// The id of the rule with this name.
    pub fn rule_id(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.name == name)
    }

    pub fn action(&self, rule: usize) -> Action {
        self.rules.get(rule).map_or(Action::Off, |r| r.action)
    }

    /// Whether attribute keys need looking at (any key list or `secret_keys` in use).
    pub fn keys_matter(&self) -> bool {
        self.secret_rule.is_some() || !self.allow.is_empty() || !self.block.is_empty()
    }

    /// Whether a key can be anything but plain, from its last bytes alone (no hashing): most
    /// keys are settled here.
    pub fn key_may_match(&self, key: &str) -> bool {
        match (&self.key_tails, detect::key_tail(key)) {
            (Some(bits), Some(tail)) => {
                let tail = usize::from(tail);
                bits.get(tail / 64)
                    .is_some_and(|word| word & (1 << (tail % 64)) != 0)
            }
            _ => true,
        }
    }

    /// Classifies an attribute key (`scratch` is reused for the normalised key).
    pub fn classify(&self, key: &str, scratch: &mut Vec<u8>) -> KeyClass {
        detect::normalize_key(key, scratch);
        let k = scratch.as_slice();
        if self.allow.contains(k) {
            KeyClass::Allow
        } else if self.block.contains(k) {
            KeyClass::Block
        } else if self.secret_rule.is_some()
            && self.secret_names.iter().any(|n| {
                k == n.as_slice()
                    || (k.len() > n.len()
                        && k.ends_with(n)
                        && k.get(k.len() - n.len() - 1) == Some(&b'_'))
            })
        {
            KeyClass::Secret
        } else {
            KeyClass::Plain
        }
    }

    /// Finds the confirmed, non-overlapping matches in `s` (into `hits`, cleared first), in
    /// order. Most clean strings cost one pass over their bytes and allocate nothing. Returns
    /// whether the check cost more than that pass (so the answer is worth remembering).
    ///
    /// A string with `%XX` escapes is also scanned as a percent-decoded copy, whose matches are
    /// mapped back onto the escaped text they came from; the matches of both scans are settled
    /// together, by the same rule as the matches of one.
    pub fn find(&self, s: &str, hits: &mut Vec<Hit>) -> bool {
        self.find_with(s, hits, true)
    }

    /// [`Engine::find`]; without `shortcuts`, every candidate goes through the whole set of
    /// patterns (what the shortcuts are tested against).
    pub(crate) fn find_with(&self, s: &str, hits: &mut Vec<Hit>, shortcuts: bool) -> bool {
        hits.clear();
        let Some(set) = &self.set else {
            return false;
        };
        if s.is_empty() {
            return false;
        }
        let (verdict, escaped, possible) = if self.custom {
            (
                Prefilter::Candidate,
                s.contains('%') && detect::has_escape(s.as_bytes()),
                self.detector_bits,
            )
        } else {
            detect::precheck(s, self.detector_bits)
        };
        if shortcuts && verdict == Prefilter::Candidate && !escaped && !self.custom {
            // A value that is an address and nothing else (`client.address`, `net.peer.ip`):
            // the one match the scan would find, without it. Only the address detectors match
            // digits and dots or hex digits and colons alone.
            if let Some(rule) = self.whole_address(s) {
                hits.push(Hit {
                    rule,
                    range: 0..s.len(),
                });
                return true;
            }
        }
        if verdict == Prefilter::Candidate {
            // One or two detectors the pre-check left: their own regexes, rather than the
            // set's two passes and then theirs (regexes run several times slower in a plugin).
            if shortcuts && !self.custom && possible.count_ones() <= 2 {
                for m in &self.matchers {
                    if m.detector.is_some_and(|d| possible & d.bit() != 0) {
                        self.collect(m, s, None, hits);
                    }
                }
            } else {
                self.scan(set, s, None, hits);
            }
        }
        if escaped {
            DECODED.with(|cell| match cell.try_borrow_mut() {
                Ok(mut decoded) => {
                    self.scan_decoded(set, s, &mut decoded, hits);
                    if decoded.capacity() > DECODED_KEEP {
                        *decoded = Decoded::default();
                    }
                }
                // Not reachable (a scan does not start another), but never a panic.
                Err(_) => self.scan_decoded(set, s, &mut Decoded::default(), hits),
            });
        }
        if hits.len() > 1 {
            // Leftmost first, then longest, then the lower rule id; drop overlaps.
            hits.sort_by(|a, b| {
                (a.range.start, b.range.end, a.rule).cmp(&(b.range.start, a.range.end, b.rule))
            });
            let mut end = 0;
            hits.retain(|h| {
                let keep = h.range.start >= end;
                if keep {
                    end = h.range.end;
                }
                keep
            });
        }
        verdict != Prefilter::Clean || escaped
    }

    /// The rule of the address detector that `s`, all of it, is an address for, when on.
    fn whole_address(&self, s: &str) -> Option<usize> {
        if s.len() > 45 {
            return None;
        }
        let (detector, rule) = match s.as_bytes().first()? {
            b'0'..=b'9' if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') => {
                s.parse::<std::net::Ipv4Addr>().ok()?;
                (Detector::Ipv4, 3)
            }
            _ if s.contains(':')
                && s.bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.') =>
            {
                detect::ipv6(s).then_some(())?;
                (Detector::Ipv6, 4)
            }
            _ => return None,
        };
        debug_assert_eq!(Detector::ALL[rule], detector);
        (self.detector_bits & detector.bit() != 0).then_some(rule)
    }

    /// Scans `s` decoded, adding its matches as ranges of `s`.
    fn scan_decoded(&self, set: &RegexSet, s: &str, decoded: &mut Decoded, hits: &mut Vec<Hit>) {
        decoded.decode(s);
        let text = decoded.text();
        if self.custom || detect::prefilter(text, self.detector_bits) == Prefilter::Candidate {
            self.scan(set, text, Some(decoded), hits);
        }
    }

    /// Adds the matches in `text` to `hits`; with `decoded`, `text` is its copy and the ranges
    /// added are those of the original.
    fn scan(&self, set: &RegexSet, text: &str, decoded: Option<&Decoded>, hits: &mut Vec<Hit>) {
        // `is_match` stops at the first match and allocates nothing; only a string that has a
        // match pays for the set of matching patterns.
        if !set.is_match(text) {
            return;
        }
        for idx in set.matches(text).iter() {
            if let Some(m) = self.matchers.get(idx) {
                self.collect(m, text, decoded, hits);
            }
        }
    }

    fn collect(&self, m: &Matcher, s: &str, decoded: Option<&Decoded>, hits: &mut Vec<Hit>) {
        let mut push = |whole: Range<usize>, target: Range<usize>| {
            let range = match m.detector {
                Some(d) => d.confirm(s, whole, target),
                None => Some(target),
            };
            if let Some(range) = range
                && !range.is_empty()
                && !s.get(range.clone()).is_some_and(|t| self.is_redacted(t))
            {
                hits.push(Hit {
                    range: decoded.map_or(range.clone(), |d| d.original(range)),
                    rule: m.rule,
                });
            }
        };
        if m.group == 0 {
            for found in m.regex.find_iter(s) {
                push(found.range(), found.range());
            }
        } else {
            for caps in m.regex.captures_iter(s) {
                if let (Some(whole), Some(target)) = (caps.get(0), caps.get(m.group)) {
                    push(whole.range(), target.range());
                }
            }
        }
    }

    /// Whether `text` is already this plugin's output (the mask, or a hash), so that redacting
    /// twice changes nothing.
    pub fn is_redacted(&self, text: &str) -> bool {
        text == self.mask || is_hash_output(text)
    }

    /// `hmac:<key id>:<first 16 bytes of HMAC-SHA256, hex>`.
    pub fn hash(&self, data: &[u8]) -> Option<String> {
        let key = self.hash.as_ref()?;
        let mut mac = key.mac.clone();
        mac.update(data);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(6 + key.id.len() + 32);
        out.push_str("hmac:");
        out.push_str(&key.id);
        out.push(':');
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in digest.iter().take(16) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Some(out)
    }
}

fn is_hash_output(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("hmac:") else {
        return false;
    };
    let Some((id, hex)) = rest.split_once(':') else {
        return false;
    };
    !id.is_empty() && hex.len() == 32 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}
