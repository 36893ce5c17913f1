//! The built-in detectors: their patterns, the checks that confirm a pattern match (Luhn,
//! mod-97, the standard library's address parsers, the SSA's number ranges, word boundaries,
//! header context), the byte pre-check that lets strings with nothing to find skip the regex
//! scan, and the percent-decoded copy of a string with `%XX` escapes that the engine scans as
//! well.
//!
//! Patterns use explicit ASCII classes (`[0-9]`, not `\d`) so that they neither match other
//! scripts' digits nor need the Unicode tables at match time.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::str::FromStr;

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    Email,
    CreditCard,
    Iban,
    Ipv4,
    Ipv6,
    Jwt,
    Bearer,
    AwsAccessKey,
    SecretKeys,
    UrlSecrets,
    Phone,
    PrivateKey,
    SaasTokens,
    NationalId,
}

impl Detector {
    /// Every detector, in the order of their rule ids (and of ties between overlapping matches).
    pub const ALL: [Detector; 14] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::Iban,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::Jwt,
        Detector::Bearer,
        Detector::AwsAccessKey,
        Detector::SecretKeys,
        Detector::UrlSecrets,
        Detector::Phone,
        Detector::PrivateKey,
        Detector::SaasTokens,
        Detector::NationalId,
    ];

    /// The detector's name in the config and in the `rule` attribute of the counter.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::Jwt => "jwt",
            Detector::Bearer => "bearer",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::SecretKeys => "secret_keys",
            Detector::UrlSecrets => "url_secrets",
            Detector::Phone => "phone",
            Detector::PrivateKey => "private_key",
            Detector::SaasTokens => "saas_tokens",
            Detector::NationalId => "national_id",
        }
    }

    /// The detector's bit in the `enabled` set that [`prefilter`] takes.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The pattern that finds candidates in a string; `None` for `secret_keys`, which looks at
    /// attribute keys instead.
    pub fn pattern(self) -> Option<&'static str> {
        Some(match self {
            Detector::Email => {
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}"
            }
            // 13 to 19 digits, optionally grouped by single spaces or dashes.
            Detector::CreditCard => r"[0-9](?:[ -]?[0-9]){12,18}",
            // Country code, check digits, 11 to 30 more characters, optionally grouped by spaces.
            Detector::Iban => r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}",
            Detector::Ipv4 => r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}",
            // Groups of hex digits and colons (an embedded IPv4 address allowed); the standard
            // library's parser decides.
            Detector::Ipv6 => {
                r"[0-9A-Fa-f]{0,4}(?::(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?){2,8}"
            }
            // A JSON header (`{"` is `eyJ` in base64url), a payload and an optional signature.
            Detector::Jwt => r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            // The scheme, then the credential (group 1).
            Detector::Bearer => r"(?i:bearer|basic)[ \t]+([A-Za-z0-9._~+/-]+=*)",
            Detector::AwsAccessKey => r"(?:AKIA|ASIA)[A-Z0-9]{16}",
            Detector::SecretKeys => return None,
            // A query (or fragment) parameter whose name is or ends in a secret's name; the value
            // is group 1.
            Detector::UrlSecrets => {
                r#"(?:^|[?&#;])(?i:(?:[a-z0-9_.-]*[_.-])?(?:access_token|token|api[_-]?key|key|sig|signature|password|passwd|pwd|secret))=([^&#\s"'<>]+)"#
            }
            // E.164: a plus sign and 8 to 15 digits, the first not 0.
            Detector::Phone => r"\+[1-9][0-9]{7,14}",
            // A PEM private key block, BEGIN line to END line; a block cut off before its END
            // line (a truncated log line) runs to the end of the text. Certificates and public
            // keys have other labels.
            Detector::PrivateKey => {
                r"(?s)-----BEGIN [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)"
            }
            // Tokens whose issuers document a prefix and a shape: Stripe secret and restricted
            // keys, GitHub tokens (classic and fine-grained), Slack tokens, Google API keys,
            // GitLab personal access tokens, npm tokens, SendGrid API keys, OpenAI project keys.
            Detector::SaasTokens => concat!(
                r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,247}",
                r"|gh[pousr]_[0-9A-Za-z]{36}",
                r"|github_pat_[0-9A-Za-z_]{82}",
                r"|xox[abprs]-(?:[0-9]{1,13}-){1,4}[0-9A-Za-z]{10,64}",
                r"|AIza[0-9A-Za-z_-]{35}",
                r"|glpat-[0-9A-Za-z_-]{20,}(?:\.[0-9A-Za-z_-]+){0,3}",
                r"|npm_[0-9A-Za-z]{36}",
                r"|SG\.[0-9A-Za-z_-]{22}\.[0-9A-Za-z_-]{43}",
                r"|sk-proj-[0-9A-Za-z_-]{20,}",
            ),
            // A US social security number, grouped by dashes or by spaces (the same both
            // times); nine digits in a row are too often something else.
            Detector::NationalId => r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}",
        })
    }

    /// The capture group whose text is redacted (0: the whole match).
    pub fn group(self) -> usize {
        match self {
            Detector::Bearer | Detector::UrlSecrets => 1,
            _ => 0,
        }
    }

    /// Confirms a pattern match: `whole` is the whole match, `target` the part that would be
    /// redacted. Returns the part to redact, which may be shorter than `target` (a card number
    /// followed by another number, an IPv6 address followed by a colon), or `None`.
    pub fn confirm(
        self,
        s: &str,
        whole: Range<usize>,
        target: Range<usize>,
    ) -> Option<Range<usize>> {
        let b = s.as_bytes();
        match self {
            Detector::Email
            | Detector::UrlSecrets
            | Detector::SecretKeys
            | Detector::PrivateKey => Some(target),
            Detector::CreditCard => {
                if !boundary_before(b, target.start) {
                    return None;
                }
                group_prefixes(b, &target, b" -")
                    .find(|end| card_number(b, target.start, *end))
                    .map(|end| target.start..end)
            }
            Detector::Iban => {
                if !boundary_before(b, target.start) {
                    return None;
                }
                group_prefixes(b, &target, b" ")
                    .find(|end| iban(b, target.start, *end))
                    .map(|end| target.start..end)
            }
            Detector::Ipv4 => {
                let ok = !prev(b, target.start)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.')
                    && boundary_after(b, target.end)
                    && !(at(b, target.end) == Some(b'.')
                        && at(b, target.end + 1).is_some_and(|c| c.is_ascii_digit()))
                    && s.get(target.clone())
                        .is_some_and(|t| Ipv4Addr::from_str(t).is_ok());
                ok.then_some(target)
            }
            Detector::Ipv6 => {
                if prev(b, target.start)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b':' || c == b'.')
                    || !boundary_after(b, target.end)
                {
                    return None;
                }
                let text = s.get(target.clone())?;
                // A trailing single colon belongs to the text around (`fe80::1: refused`).
                let end = if ipv6(text) {
                    target.end
                } else if text
                    .strip_suffix(':')
                    .is_some_and(|t| !t.ends_with(':') && ipv6(t))
                {
                    target.end - 1
                } else {
                    return None;
                };
                Some(target.start..end)
            }
            Detector::Jwt => {
                let ok = !prev(b, target.start)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
                ok.then_some(target)
            }
            Detector::Bearer => {
                if !boundary_before(b, whole.start) {
                    return None;
                }
                let token = s.get(target.clone())?;
                let basic = s
                    .get(whole.start..whole.start + 5)
                    .is_some_and(|w| w.eq_ignore_ascii_case("basic"));
                let ok = header_context(s, whole.start, target.end)
                    || if basic {
                        basic_credentials(token)
                    } else {
                        looks_like_token(token)
                    };
                ok.then_some(target)
            }
            Detector::AwsAccessKey => (boundary_before(b, target.start)
                && boundary_after(b, target.end))
            .then_some(target),
            Detector::Phone => {
                let ok = !prev(b, target.start)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'+')
                    && boundary_after(b, target.end);
                ok.then_some(target)
            }
            // Not the middle or the start of a longer identifier: a token that runs on is not
            // the documented shape.
            Detector::SaasTokens => {
                let ok = !prev(b, target.start)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    && !at(b, target.end)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
                ok.then_some(target)
            }
            Detector::NationalId => {
                (ssn(b, &target) && ssn_stands_alone(b, &target)).then_some(target)
            }
        }
    }
}

fn at(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).copied()
}

fn prev(b: &[u8], i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|i| at(b, i))
}

/// No letter or digit right before `i` (the match does not start inside a word or a number).
fn boundary_before(b: &[u8], i: usize) -> bool {
    !prev(b, i).is_some_and(|c| c.is_ascii_alphanumeric())
}

/// No letter or digit at `i` (the match does not end inside a word or a number).
fn boundary_after(b: &[u8], i: usize) -> bool {
    !at(b, i).is_some_and(|c| c.is_ascii_alphanumeric())
}

/// `AAA-GG-SSSS` (or with spaces) within the SSA's ranges: the area is not 000, 666 or 900 to
/// 999 (never issued), the group not 00, the serial not 0000.
fn ssn(b: &[u8], m: &Range<usize>) -> bool {
    let Some(t) = b.get(m.clone()) else {
        return false;
    };
    let number = |r: Range<usize>| {
        t.get(r).map(|d| {
            d.iter()
                .fold(0u32, |n, c| n * 10 + u32::from(c.wrapping_sub(b'0')))
        })
    };
    let (Some(area), Some(group), Some(serial)) = (number(0..3), number(4..6), number(7..11))
    else {
        return false;
    };
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// The number is not a piece of a longer run of digits and separators: not glued to a letter
/// or digit, not continued by `-` or `+` before it (`ORD-123-45-6789`, `+1-…`), not joined by
/// `_` or `.` to a word or number on either side (`1.123-45-6789`, `123-45-6789.2`), not
/// followed by `-` and more (`123-45-6789-01`), and, when grouped by spaces, not next to
/// another group of digits (`+44 020 12 3456 7`).
fn ssn_stands_alone(b: &[u8], m: &Range<usize>) -> bool {
    let spaced = at(b, m.start + 3) == Some(b' ');
    let word = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit());
    let before = prev(b, m.start);
    let before2 = m.start.checked_sub(2).and_then(|i| at(b, i));
    let after = at(b, m.end);
    let after2 = at(b, m.end + 1);
    let joined_before = match before {
        Some(b'-' | b'+') => true,
        Some(b'_' | b'.') => word(before2),
        Some(b' ') => spaced && digit(before2),
        c => word(c),
    };
    let joined_after = match after {
        Some(b'-' | b'+' | b'_' | b'.') => word(after2),
        Some(b' ') => spaced && digit(after2),
        c => word(c),
    };
    !joined_before && !joined_after
}

/// The ends of a greedy match to try, longest first: the whole match if it ends at a boundary,
/// then every end just before a separator (so `4111 1111 1111 1111 12` still finds the card).
fn group_prefixes<'a>(
    b: &'a [u8],
    m: &Range<usize>,
    separators: &'a [u8],
) -> impl Iterator<Item = usize> + 'a {
    let full = boundary_after(b, m.end).then_some(m.end);
    let start = m.start;
    let inner = (start + 1..m.end)
        .rev()
        .filter(move |&i| at(b, i).is_some_and(|c| separators.contains(&c)));
    full.into_iter().chain(inner)
}

/// 13 to 19 digits, a major network's first digit (2 to 6), and a valid Luhn check digit.
fn card_number(b: &[u8], start: usize, end: usize) -> bool {
    let Some(text) = b.get(start..end) else {
        return false;
    };
    let digits = || {
        text.iter()
            .filter(|c| c.is_ascii_digit())
            .map(|c| u32::from(c - b'0'))
    };
    let n = digits().count();
    if !(13..=19).contains(&n) || !digits().next().is_some_and(|d| (2..=6).contains(&d)) {
        return false;
    }
    luhn(digits())
}

/// The Luhn checksum over digits given most significant first.
pub fn luhn(digits: impl DoubleEndedIterator<Item = u32>) -> bool {
    let sum: u32 = digits
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// 15 to 34 characters (spaces aside) whose ISO 13616 mod-97 checksum is 1.
fn iban(b: &[u8], start: usize, end: usize) -> bool {
    let Some(text) = b.get(start..end) else {
        return false;
    };
    let chars = || text.iter().copied().filter(|c| *c != b' ');
    let n = chars().count();
    if !(15..=34).contains(&n) {
        return false;
    }
    // The first four characters move to the end; letters count as 10 to 35.
    let mut rem: u32 = 0;
    for c in chars().skip(4).chain(chars().take(4)) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

pub(crate) fn ipv6(text: &str) -> bool {
    Ipv6Addr::from_str(text).is_ok_and(|a| !a.is_unspecified())
}

/// The credential is a header's whole value (`Bearer abc`), or follows an `Authorization`
/// header or key (`Authorization: Bearer abc`, `"authorization":"Basic abc"`).
fn header_context(s: &str, scheme: usize, token_end: usize) -> bool {
    const QUOTES: [char; 4] = [' ', '\t', '"', '\''];
    let (Some(before), Some(after)) = (s.get(..scheme), s.get(token_end..)) else {
        return false;
    };
    let before = before.trim_end_matches(QUOTES);
    if before.is_empty() {
        return after.trim_end_matches(QUOTES).is_empty();
    }
    let Some(name) = before.strip_suffix([':', '=']) else {
        return false;
    };
    let name = name.trim_end_matches(QUOTES).as_bytes();
    name.len() >= 13 && name[name.len() - 13..].eq_ignore_ascii_case(b"authorization")
}

/// Outside a header, a bearer token must look like one: at least 8 characters with a digit, or
/// at least 20 in mixed case (so that "bearer authentication" is left alone).
fn looks_like_token(t: &str) -> bool {
    let b = t.as_bytes();
    (b.len() >= 8 && b.iter().any(u8::is_ascii_digit))
        || (b.len() >= 20
            && b.iter().any(u8::is_ascii_uppercase)
            && b.iter().any(u8::is_ascii_lowercase))
}

/// Outside a header, basic credentials must be base64 of `user:password`.
fn basic_credentials(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    if body.len() < 4 || (!t.len().is_multiple_of(4) && t.len() != body.len()) {
        return false;
    }
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut colon = false;
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return false,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let byte = (acc >> bits) & 0xff;
            if byte == u32::from(b':') {
                colon = true;
            } else if byte < 0x20 {
                // Decodes to control characters: not text.
                return false;
            }
        }
    }
    colon
}

/// Byte classes for [`prefilter`]: flags (OR-ed) and counters (added, packed in a `u64`).
const AT: u16 = 1;
const EQ: u16 = 1 << 1;
const PLUS: u16 = 1 << 2;
const UPPER: u16 = 1 << 3;
const J: u16 = 1 << 4;
const B: u16 = 1 << 5;
const PERCENT: u16 = 1 << 6;
const DASH: u16 = 1 << 7;
const UNDERSCORE: u16 = 1 << 8;
const SPACE: u16 = 1 << 9;
/// Lowercase `k`, `g`, `x`, `z`: in the prefixes of `saas_tokens` (`sk_`, `gh`, `glpat-`,
/// `xox`, `AIza`).
const K: u16 = 1 << 10;
const G: u16 = 1 << 11;
const X: u16 = 1 << 12;
const Z: u16 = 1 << 13;
const COUNT_BITS: u32 = 21;
const DIGIT: u64 = 1;
const DOT: u64 = 1 << COUNT_BITS;
const COLON: u64 = 1 << (2 * COUNT_BITS);
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

static FLAGS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut c = b'A';
    while c <= b'Z' {
        t[c as usize] = UPPER;
        c += 1;
    }
    t[b'@' as usize] = AT;
    t[b'=' as usize] = EQ;
    t[b'+' as usize] = PLUS;
    t[b'J' as usize] = UPPER | J;
    t[b'B' as usize] = UPPER | B;
    t[b'b' as usize] = B;
    t[b'%' as usize] = PERCENT;
    t[b'-' as usize] = DASH;
    t[b'_' as usize] = UNDERSCORE;
    t[b' ' as usize] = SPACE;
    t[b'k' as usize] = K;
    t[b'g' as usize] = G;
    t[b'x' as usize] = X;
    t[b'z' as usize] = Z;
    t
};

static COUNTS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = DIGIT;
        c += 1;
    }
    t[b'.' as usize] = DOT;
    t[b':' as usize] = COLON;
    t
};

/// Whether any of the `enabled` detectors could match in `s`.
#[cfg(test)]
pub fn may_match(s: &str, enabled: u16) -> bool {
    prefilter(s, enabled) == Prefilter::Candidate
}

/// What [`prefilter`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefilter {
    /// No detector can match; the first pass settled it.
    Clean,
    /// No detector can match; it took more passes than the first.
    CleanAfterMore,
    /// Some detector may match: the regexes decide.
    Candidate,
}

/// Whether any of the `enabled` detectors could match in `s` (see [`precheck`]).
pub fn prefilter(s: &str, enabled: u16) -> Prefilter {
    precheck(s, enabled).0
}

/// Whether any of the `enabled` detectors could match in `s`, whether a clean answer cost
/// more than the first pass, whether `s` has a `%XX` escape that [`Decoded`] would decode, and
/// which detectors could match (as [`Detector::bit`]s: every one that does, maybe more).
///
/// One branch-free pass over the bytes counts digits, dots and colons and notes `@`, `=`, `+`,
/// `%`, `-`, `_`, spaces, capitals and a few letters; each detector needs some of them (`@`,
/// 13 digits, 3 dots and 4 digits, `=`, ...). The detectors that these counts settle are asked
/// first; only when none of them can match do the others look for their literal (`AKIA`,
/// `bearer`, `eyJ`, `::`, a secret's name before `=`, `-----BEGIN`, a token prefix, ...), at
/// most one more pass each. A string found clean skips the regex scan altogether. A string
/// without `%` is never looked at for escapes.
pub fn precheck(s: &str, enabled: u16) -> (Prefilter, bool, u16) {
    let b = s.as_bytes();
    if b.len() < 3 {
        return (Prefilter::Clean, false, 0);
    }
    if b.len() as u64 > COUNT_MAX {
        let verdict = if enabled != 0 {
            Prefilter::Candidate
        } else {
            Prefilter::Clean
        };
        return (verdict, has_escape(b), enabled);
    }
    let (mut counts, mut flags) = (0u64, 0u16);
    for &c in b {
        flags |= FLAGS[usize::from(c)];
        counts += COUNTS[usize::from(c)];
    }
    let digits = counts & COUNT_MAX;
    let dots = (counts >> COUNT_BITS) & COUNT_MAX;
    let colons = counts >> (2 * COUNT_BITS);
    let len = b.len();
    let on = |d: Detector| enabled & d.bit() != 0;
    let has = |f: u16| flags & f != 0;
    let escaped = has(PERCENT) && has_escape(b);
    let mut possible = 0u16;
    // Settled by the counts.
    for (d, holds) in [
        (Detector::Email, has(AT)),
        (Detector::Ipv4, dots >= 3 && digits >= 4),
        (Detector::Ipv6, colons >= 6),
    ] {
        if on(d) && holds {
            possible |= d.bit();
        }
    }
    // The others: whether the counts let them through, then one more pass each.
    let mut more = false;
    let mut check = |d: Detector, counts: bool, pass: &dyn Fn() -> bool| {
        if on(d) && counts && possible & d.bit() == 0 {
            more = true;
            if pass() {
                possible |= d.bit();
            }
        }
    };
    check(Detector::CreditCard, digits >= 13, &|| card_run(b));
    check(Detector::Phone, has(PLUS) && digits >= 8, &|| {
        phone_start(b)
    });
    check(Detector::Jwt, dots >= 2 && has(J), &|| contains(b, b"eyJ"));
    // An IPv6 address has `::` or at least six colons.
    check(Detector::Ipv6, colons >= 2, &|| contains(b, b"::"));
    check(Detector::UrlSecrets, has(EQ), &|| url_secret_name(b));
    check(Detector::AwsAccessKey, len >= 20 && has(UPPER), &|| {
        aws_prefix(b)
    });
    check(
        Detector::Iban,
        digits >= 2 && has(UPPER) && len >= 15,
        &|| iban_start(b),
    );
    check(Detector::Bearer, has(B), &|| bearer_or_basic(b));
    check(
        Detector::PrivateKey,
        has(DASH) && has(UPPER) && len >= 27,
        &|| private_key_begin(b),
    );
    check(Detector::SaasTokens, saas_bytes(flags, dots, len), &|| {
        saas_prefix(b)
    });
    check(
        Detector::NationalId,
        digits >= 9 && has(DASH | SPACE),
        &|| ssn_shape(b),
    );
    let verdict = if possible != 0 {
        Prefilter::Candidate
    } else if more || has(PERCENT) {
        // Looking further (or for escapes) was a pass of its own.
        Prefilter::CleanAfterMore
    } else {
        Prefilter::Clean
    };
    (verdict, escaped, possible)
}

/// Whether the bytes noted in the first pass allow one of the `saas_tokens` shapes: each needs
/// its prefix's separator and a letter of it, and a minimum length (`sk_live_` and 24, `ghp_` or
/// `npm_` and 36, `xoxb-1-` and 10, `glpat-` and 20, `sk-proj-` and 20, `AIza` and 35, `SG.`,
/// 22, `.` and 43).
fn saas_bytes(flags: u16, dots: u64, len: usize) -> bool {
    let has = |f: u16| flags & f != 0;
    (has(UNDERSCORE) && (len >= 40 || (has(K) && len >= 32)))
        || (has(DASH) && ((has(X) && len >= 17) || (has(G) && len >= 26) || (has(K) && len >= 28)))
        || (has(Z) && has(UPPER) && len >= 39)
        || (has(UPPER) && dots >= 2 && len >= 69)
}

/// One of the `saas_tokens` prefixes: one pass, looking only where a prefix's first byte is.
fn saas_prefix(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, c)| {
        let rest = |w: &[u8]| b.get(i + 1..i + 1 + w.len()) == Some(w);
        match c {
            b's' | b'r' => rest(b"k_live_") || rest(b"k_test_") || (*c == b's' && rest(b"k-proj-")),
            b'g' => {
                (matches!(at(b, i + 1), Some(b'h'))
                    && matches!(at(b, i + 2), Some(b'p' | b'o' | b'u' | b's' | b'r'))
                    && at(b, i + 3) == Some(b'_'))
                    || rest(b"ithub_pat_")
                    || rest(b"lpat-")
            }
            b'x' => {
                rest(b"ox")
                    && matches!(at(b, i + 3), Some(b'a' | b'b' | b'p' | b'r' | b's'))
                    && at(b, i + 4) == Some(b'-')
            }
            b'A' => rest(b"Iza"),
            b'n' => rest(b"pm_"),
            b'S' => rest(b"G."),
            _ => false,
        }
    })
}

/// `-----BEGIN ` and a label of capitals and spaces that has `PRIVATE KEY` in it.
fn private_key_begin(b: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const PRIVATE: &[u8] = b"PRIVATE KEY";
    b.iter().enumerate().any(|(i, c)| {
        *c == b'-'
            && b.get(i..i + BEGIN.len()) == Some(BEGIN)
            && b.get(i + BEGIN.len()..).is_some_and(|rest| {
                let label = rest
                    .iter()
                    .take(60)
                    .take_while(|c| c.is_ascii_uppercase() || **c == b' ')
                    .count();
                rest.get(..label)
                    .is_some_and(|l| l.windows(PRIVATE.len()).any(|w| w == PRIVATE))
            })
    })
}

/// Three digits, a dash or a space, two digits, the same separator, four digits.
fn ssn_shape(b: &[u8]) -> bool {
    let digits = |r: Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.iter().enumerate().any(|(i, c)| {
        c.is_ascii_digit()
            && matches!(at(b, i + 3), Some(b'-' | b' '))
            && at(b, i + 6) == at(b, i + 3)
            && digits(i..i + 3)
            && digits(i + 4..i + 6)
            && digits(i + 7..i + 11)
    })
}

/// The byte a `%XX` escape at `i` stands for, when it is ASCII (`%00` to `%7F`): the escapes
/// [`Decoded`] decodes. Other escapes are pieces of multi-byte characters, which no detector
/// looks for.
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    if at(b, i) != Some(b'%') {
        return None;
    }
    let hi = hex(at(b, i + 1)?)?;
    let lo = hex(at(b, i + 2)?)?;
    (hi < 8).then_some(hi << 4 | lo)
}

/// Some `%XX` escape that [`Decoded`] would decode.
pub fn has_escape(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .any(|(i, c)| *c == b'%' && escape_at(b, i).is_some())
}

/// A percent-decoded copy of a string, for finding what its escapes hide
/// (`email=jane.doe%40example.com`), and where the escapes were, to map the ranges found in the
/// copy back onto the original. Only escapes of ASCII characters are decoded, so the copy is
/// UTF-8 whenever the original is, and `+` stays `+`. Reused from string to string.
#[derive(Debug, Default)]
pub struct Decoded {
    text: String,
    /// The positions in `text` of the bytes that were three-byte escapes, ascending.
    escapes: Vec<usize>,
}

impl Decoded {
    /// Decodes `s` into the copy, replacing what it held.
    pub fn decode(&mut self, s: &str) {
        self.text.clear();
        self.escapes.clear();
        let b = s.as_bytes();
        let mut copied = 0;
        let mut i = 0;
        while let Some(off) = b
            .get(i..)
            .and_then(|rest| rest.iter().position(|&c| c == b'%'))
        {
            let pct = i + off;
            match escape_at(b, pct) {
                Some(c) => {
                    // Both ends are at ASCII bytes, so at character boundaries.
                    self.text.push_str(s.get(copied..pct).unwrap_or_default());
                    self.escapes.push(self.text.len());
                    self.text.push(char::from(c));
                    copied = pct + 3;
                    i = pct + 3;
                }
                None => i = pct + 1,
            }
        }
        self.text.push_str(s.get(copied..).unwrap_or_default());
    }

    /// The decoded copy.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The range of the original that a range of the copy came from.
    pub fn original(&self, range: Range<usize>) -> Range<usize> {
        let orig = |i: usize| i + 2 * self.escapes.partition_point(|&e| e < i);
        orig(range.start)..orig(range.end)
    }

    /// The bytes held for reuse.
    pub fn capacity(&self) -> usize {
        self.text.capacity() + self.escapes.capacity() * std::mem::size_of::<usize>()
    }
}

/// 13 digits in a row, each pair separated by at most one space or dash: the shape the card
/// pattern needs. Version strings and timestamps with 13 digits in all (a user agent) fail it.
fn card_run(b: &[u8]) -> bool {
    let (mut run, mut gap) = (0u32, false);
    for &c in b {
        if c.is_ascii_digit() {
            run += 1;
            gap = false;
            if run >= 13 {
                return true;
            }
        } else if (c == b' ' || c == b'-') && run > 0 && !gap {
            gap = true;
        } else {
            run = 0;
            gap = false;
        }
    }
    false
}

/// `bearer` or `basic`, in any case: one pass, looking only where a `b` is.
fn bearer_or_basic(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, c)| {
        c | 0x20 == b'b'
            && (b
                .get(i + 1..i + 6)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"earer"))
                || b.get(i + 1..i + 5)
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"asic")))
    })
}

/// `+` and 8 digits.
fn phone_start(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, c)| {
        *c == b'+'
            && b.get(i + 1..i + 9)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    })
}

/// `AKIA` or `ASIA`.
fn aws_prefix(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .any(|(i, c)| *c == b'A' && matches!(b.get(i + 1..i + 4), Some(b"KIA") | Some(b"SIA")))
}

/// Two capital letters then two digits: how an IBAN starts.
fn iban_start(b: &[u8]) -> bool {
    // Capitals seen just before, then digits seen just after them.
    let (mut upper, mut digits) = (0u32, 0u32);
    for &c in b {
        if c.is_ascii_uppercase() {
            upper = if digits > 0 { 1 } else { upper + 1 };
            digits = 0;
        } else if c.is_ascii_digit() && upper >= 2 {
            digits += 1;
            if digits == 2 {
                return true;
            }
        } else {
            upper = 0;
            digits = 0;
        }
    }
    false
}

/// Some `=` follows a parameter name that `url_secrets` looks for.
fn url_secret_name(b: &[u8]) -> bool {
    const NAMES: [&[u8]; 8] = [
        b"token",
        b"key",
        b"sig",
        b"signature",
        b"password",
        b"passwd",
        b"pwd",
        b"secret",
    ];
    b.iter().enumerate().any(|(i, c)| {
        *c == b'='
            && i > 0
            // The last letter of one of the names.
            && b.get(i - 1).is_some_and(|c| matches!(c.to_ascii_lowercase(), b'n' | b'y' | b'g' | b'e' | b'd' | b't'))
            && b.get(..i).is_some_and(|before| {
                NAMES.iter().any(|n| {
                    before.len() >= n.len()
                        && before[before.len() - n.len()..].eq_ignore_ascii_case(n)
                })
            })
    })
}

/// Search for a short needle, looking only where its first byte is.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    hay.iter()
        .enumerate()
        .any(|(i, c)| *c == first && hay.get(i..i + needle.len()).is_some_and(|w| w == needle))
}

/// The last two bytes of a key as [`normalize_key`] would write them (they depend only on the
/// key's last three bytes), as one number; `None` for keys shorter than that.
pub fn key_tail(key: &str) -> Option<u16> {
    let b = key.as_bytes();
    let tail = b.get(b.len().checked_sub(3)?..)?;
    let mut out = [0u8; 6];
    let mut n = 0;
    let mut lower_before = false;
    for &c in tail {
        let (upper, norm) = match c {
            b'.' | b'-' | b'_' => (false, b'_'),
            b'A'..=b'Z' => (true, c.to_ascii_lowercase()),
            _ => (false, c),
        };
        if upper && lower_before {
            out[n] = b'_';
            n += 1;
        }
        out[n] = norm;
        n += 1;
        lower_before = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    Some(u16::from_be_bytes([out[n - 2], out[n - 1]]))
}

/// Normalises an attribute key for comparison: ASCII lowercase, `.`, `-` and `_` all `_`, and a
/// `_` where a lowercase letter or digit meets an uppercase one (`apiKey` is `api_key`).
pub fn normalize_key(key: &str, out: &mut Vec<u8>) {
    out.clear();
    let mut lower_before = false;
    for &c in key.as_bytes() {
        match c {
            b'.' | b'-' | b'_' => {
                out.push(b'_');
                lower_before = false;
            }
            b'A'..=b'Z' => {
                if lower_before {
                    out.push(b'_');
                }
                out.push(c.to_ascii_lowercase());
                lower_before = false;
            }
            b'a'..=b'z' | b'0'..=b'9' => {
                out.push(c);
                lower_before = true;
            }
            _ => {
                out.push(c);
                lower_before = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        let d = |s: &str| s.bytes().map(|c| u32::from(c - b'0')).collect::<Vec<_>>();
        assert!(luhn(d("4111111111111111").into_iter()));
        assert!(luhn(d("79927398713").into_iter()));
        assert!(!luhn(d("4111111111111112").into_iter()));
    }

    #[test]
    fn iban_checksum() {
        let ok = |s: &str| iban(s.as_bytes(), 0, s.len());
        assert!(ok("DE89370400440532013000"));
        assert!(ok("GB82 WEST 1234 5698 7654 32"));
        assert!(!ok("DE89370400440532013001"));
    }

    #[test]
    fn key_normalisation() {
        let n = |k: &str| {
            let mut v = Vec::new();
            normalize_key(k, &mut v);
            String::from_utf8(v).unwrap_or_default()
        };
        assert_eq!(n("X-Api-Key"), "x_api_key");
        assert_eq!(n("apiKey"), "api_key");
        assert_eq!(n("APIKey"), "apikey");
        assert_eq!(
            n("http.request.header.set-cookie"),
            "http_request_header_set_cookie"
        );
        assert_eq!(n("oauth2Token"), "oauth2_token");
    }

    #[test]
    fn pre_check_helpers() {
        assert!(iban_start(b"pay DE89 3704"));
        assert!(iban_start(b"xGB82WEST"));
        assert!(!iban_start(b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit"));
        assert!(!iban_start(b"D1E89"));
        assert!(aws_prefix(b"x AKIAIOSFODNN7EXAMPLE"));
        assert!(!aws_prefix(b"AKI"));
        assert!(phone_start(b"call +14155552671"));
        assert!(!phone_start(b"1+2345678"));
        assert!(url_secret_name(b"/x?a=1&Access_Token=2"));
        assert!(!url_secret_name(b"/x?page=2&sort=asc"));
        assert!(private_key_begin(b"x -----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(private_key_begin(b"-----BEGIN PRIVATE KEY"));
        assert!(!private_key_begin(
            b"-----BEGIN CERTIFICATE----- PRIVATE KEY"
        ));
        assert!(!private_key_begin(b"-----BEGIN PUBLIC KEY-----"));
        for prefix in [
            "sk_live_",
            "rk_test_",
            "ghp_",
            "ghr_",
            "github_pat_",
            "xoxb-",
            "xoxs-",
            "AIza",
            "glpat-",
            "npm_",
            "SG.",
            "sk-proj-",
        ] {
            assert!(saas_prefix(format!("k={prefix}x").as_bytes()), "{prefix}");
        }
        for plain in [
            "sk_prod_", "gha_", "xoxo-", "AIz", "glpa-", "np_", "S.G", "sk-pro-",
        ] {
            assert!(!saas_prefix(plain.as_bytes()), "{plain}");
        }
        assert!(ssn_shape(b"a 123-45-6789"));
        assert!(ssn_shape(b"123 45 6789"));
        assert!(!ssn_shape(b"123-45 6789"));
        assert!(!ssn_shape(b"2024-01-15T10:20:30Z"));
        assert!(!ssn_shape(b"123-45-678"));
    }

    #[test]
    fn ssa_ranges() {
        let ok = |s: &str| ssn(s.as_bytes(), &(0..s.len()));
        assert!(ok("123-45-6789"));
        assert!(ok("899-01-0001"));
        for bad in [
            "000-45-6789",
            "666-45-6789",
            "900-45-6789",
            "123-00-6789",
            "123-45-0000",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }

    #[test]
    fn key_tail_agrees_with_normalisation() {
        for k in [
            "apiKey",
            "X-Api-Key",
            "db.Password",
            "userID",
            "a.B",
            "ab",
            "token",
            "x_tOKEN",
        ] {
            let mut v = Vec::new();
            normalize_key(k, &mut v);
            let expected = (v.len() >= 2 && k.len() >= 3)
                .then(|| u16::from_be_bytes([v[v.len() - 2], v[v.len() - 1]]));
            assert_eq!(key_tail(k), expected, "{k}");
        }
    }

    #[test]
    fn basic_credentials_must_decode_to_user_and_password() {
        assert!(basic_credentials("dXNlcjpwYXNz")); // user:pass
        assert!(basic_credentials("YWxhZGRpbjpvcGVuc2VzYW1l"));
        assert!(!basic_credentials("auth"));
        assert!(!basic_credentials("setup"));
    }

    #[test]
    fn card_prefilter_needs_thirteen_grouped_digits() {
        assert!(card_run(b"card 4111 1111 1111 1111 ok"));
        assert!(card_run(b"4111-1111-1111-1111"));
        assert!(card_run(b"x4111111111111y"));
        assert!(
            !card_run(b"4111  1111 1111 1111"),
            "two separators break the run"
        );
        assert!(!card_run(
            b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) 1234"
        ));
        assert!(!card_run(b"123456789012"));
    }

    #[test]
    fn pre_check_skips_plain_strings() {
        let all = u16::MAX;
        for plain in [
            "GET /users/{id}",
            "service-frontend",
            "200",
            "Mozilla/5.0 (X11; Linux x86_64)",
            "SELECT * FROM users WHERE id = ?",
            "https://api.example.com/users?page=2",
            "at 12:30:45",
            "about a basement",
        ] {
            assert!(!may_match(plain, all), "{plain}");
        }
        for (text, d) in [
            ("bob@example.com", Detector::Email),
            ("Authorization: Bearer abc", Detector::Bearer),
            ("/x?token=abc", Detector::UrlSecrets),
            ("at 10.0.0.1", Detector::Ipv4),
            ("card 4111111111111111", Detector::CreditCard),
            ("pay DE89370400440532013000", Detector::Iban),
            ("fe80::1", Detector::Ipv6),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.x", Detector::Jwt),
            ("k AKIAIOSFODNN7EXAMPLE", Detector::AwsAccessKey),
            ("call +14155552671", Detector::Phone),
            ("-----BEGIN EC PRIVATE KEY-----", Detector::PrivateKey),
            (
                "k npm_a7Kq2ZfR9mXc4TbW1nLp8VdY3gHs6JeU5a7K",
                Detector::SaasTokens,
            ),
            ("ssn 123-45-6789", Detector::NationalId),
        ] {
            assert!(may_match(text, d.bit()), "{text}");
        }
        assert!(!may_match("bob@example.com", Detector::Ipv4.bit()));
    }
}
