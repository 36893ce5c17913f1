//! Golden cases for the `private_key`, `saas_tokens` and `national_id` detectors and for the
//! scan of percent-decoded text: what each one masks (the exact output) and the look-alikes
//! that telemetry is full of and that must come through untouched.
//!
//! Where the line is drawn for numbers that look like a social security number: the
//! `AAA-GG-SSSS` shape must stand on its own. Glued by `-` or `+` to what comes before
//! (`ORD-123-45-6789`, `+1-123-45-6789`), joined by `_` or `.` to a word or number
//! (`v1.123-45-6789`, `123-45-6789.2`), continued by a dash and more (`123-45-6789-01`) or by
//! more digits (`123-45-67890`), it is an order number, a phone number or a version, and is
//! left alone.

use sluice_sdk::{Plugin, Verdict, testing};

use crate::detect::{self, Detector, Prefilter};
use crate::engine::Hit;
use crate::tests::{plugin, redact_with, seeded};

const M: &str = "[REDACTED]";

fn redact(input: &str) -> String {
    redact_with(&mut plugin("{}"), input)
}

/// Each input comes back exactly as it went in, with the default config.
fn untouched(inputs: &[&str]) {
    let mut p = plugin("{}");
    for input in inputs {
        assert_eq!(redact_with(&mut p, input), *input, "{input:?}");
    }
}

/// `n` letters and digits, mixed case, deterministic.
fn alnum(n: usize) -> String {
    const CHARS: &[u8] = b"a7Kq2ZfR9mXc4TbW1nLp8VdY3gHs6JeU5";
    (0..n)
        .map(|i| char::from(CHARS[(i * 7 + 3) % CHARS.len()]))
        .collect()
}

/// The engine's matches in `s` under `config`.
fn hits(config: &str, s: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    plugin(config).engine.find(s, &mut hits);
    hits
}

// ------------------------------------------------------------------------ private_key

const KEY_BODY: &str = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK";

fn pem(label: &str, body: &str) -> String {
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----")
}

#[test]
fn private_key_blocks_are_masked_whole() {
    for label in [
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "PRIVATE KEY",
        "DSA PRIVATE KEY",
        "PGP PRIVATE KEY BLOCK",
    ] {
        let input = format!("loaded key {} from vault", pem(label, KEY_BODY));
        assert_eq!(
            redact(&input),
            "loaded key [REDACTED] from vault",
            "{label}"
        );
    }
    // The whole log body, and escaped newlines (a key inside JSON text).
    assert_eq!(redact(&pem("PRIVATE KEY", KEY_BODY)), M);
    assert_eq!(
        redact(
            r#"{"key":"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----\n","ok":1}"#
        ),
        r#"{"key":"[REDACTED]\n","ok":1}"#
    );
    // Two keys: two blocks, the text between them kept.
    assert_eq!(
        redact(&format!(
            "a {} b {} c",
            pem("RSA PRIVATE KEY", "AAAA"),
            pem("EC PRIVATE KEY", "BBBB")
        )),
        "a [REDACTED] b [REDACTED] c"
    );
}

#[test]
fn a_truncated_private_key_is_masked_to_the_end() {
    assert_eq!(
        redact(
            "key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
        ),
        "key: [REDACTED]"
    );
    assert_eq!(
        redact("dump -----BEGIN RSA PRIVATE KEY-----"),
        "dump [REDACTED]"
    );
}

#[test]
fn certificates_and_public_keys_are_not_secrets() {
    let cert = pem(
        "CERTIFICATE",
        "MIIBszCCAVmgAwIBAgIUYkqGJm8d1tsfDkTeXh2xo9oq0Q4wCgYIKoZIzj0EAwIw",
    );
    let public = pem(
        "PUBLIC KEY",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqVuV9xQ1kpNfbY3oYuh0dO5tj1wh",
    );
    let rsa_public = pem("RSA PUBLIC KEY", "MEgCQQCo9+BpMRYQ/dL3DS2CyJxRF+j6ctbT");
    untouched(&[
        &cert,
        &public,
        &rsa_public,
        "-----BEGIN CERTIFICATE REQUEST-----",
        "private key rotated",
        "-----BEGIN PRIVATE-----",
    ]);
    // A certificate chain with the key after it: only the key goes.
    assert_eq!(
        redact(&format!("{cert}\n{}", pem("PRIVATE KEY", KEY_BODY))),
        format!("{cert}\n{M}")
    );
}

// ------------------------------------------------------------------------ saas_tokens

#[test]
fn saas_tokens_of_every_documented_shape() {
    let tokens = [
        format!("sk_live_{}", alnum(24)),
        format!("rk_live_{}", alnum(24)),
        format!("sk_test_{}", alnum(24)),
        format!("rk_test_{}", alnum(99)),
        format!("sk_live_{}", alnum(247)),
        format!("ghp_{}", alnum(36)),
        format!("gho_{}", alnum(36)),
        format!("ghu_{}", alnum(36)),
        format!("ghs_{}", alnum(36)),
        format!("ghr_{}", alnum(36)),
        format!("github_pat_{}_{}", alnum(22), alnum(59)),
        format!("xoxb-1234567890-1234567890123-{}", alnum(24)),
        format!(
            "xoxp-1234567890-1234567890-1234567890-{}",
            "0123456789abcdef0123456789abcdef"
        ),
        format!("xoxa-2-{}", alnum(40)),
        format!("AIza{}", alnum(35)),
        format!("AIza{}-_{}", alnum(20), alnum(13)),
        format!("glpat-{}", alnum(20)),
        format!("glpat-{}-_{}", alnum(10), alnum(8)),
        format!("npm_{}", alnum(36)),
        format!("SG.{}.{}", alnum(22), alnum(43)),
        format!("SG.{}-{}.{}_{}", alnum(10), alnum(11), alnum(20), alnum(22)),
        format!("sk-proj-{}", alnum(20)),
        format!("sk-proj-{}-{}_{}", alnum(60), alnum(40), alnum(50)),
    ];
    let mut p = plugin("{}");
    for t in &tokens {
        assert_eq!(
            redact_with(&mut p, &format!("using {t} now")),
            "using [REDACTED] now",
            "{t}"
        );
        // In a header, an env dump, JSON and a query string.
        assert_eq!(
            redact_with(&mut p, &format!("X-Key: {t}")),
            "X-Key: [REDACTED]"
        );
        assert_eq!(
            redact_with(&mut p, &format!("STRIPE_KEY={t}")),
            "STRIPE_KEY=[REDACTED]"
        );
        assert_eq!(
            redact_with(&mut p, &format!(r#"{{"k":"{t}"}}"#)),
            r#"{"k":"[REDACTED]"}"#
        );
        assert_eq!(redact_with(&mut p, t), M);
    }
}

#[test]
fn saas_token_look_alikes_are_left_alone() {
    untouched(&[
        // `sk_` strings that are not Stripe keys.
        "sk_live",
        "sk_live_",
        "task_live_x",
        &format!("task_live_{}", alnum(30)),
        &format!("sk_live_{}", alnum(23)),
        &format!("sk_prod_{}", alnum(30)),
        &format!("sk_test_{}_fixture", alnum(24)),
        "disk_test_results_for_nightly_build_42",
        // GitHub shapes one character short or long, or inside an identifier.
        &format!("ghp_{}", alnum(35)),
        &format!("ghp_{}", alnum(37)),
        &format!("xghp_{}", alnum(36)),
        &format!("my_ghp_{}", alnum(36)),
        &format!("ghx_{}", alnum(36)),
        &format!("github_pat_{}", alnum(40)),
        // Slack-like names without the digit groups.
        "xoxb-team-name",
        "xoxb-",
        &format!("xoxz-1234567890-{}", alnum(24)),
        // Too short, or not the prefix.
        &format!("AIza{}", alnum(34)),
        &format!("AIz{}", alnum(36)),
        "glpat-short",
        &format!("glpat_{}", alnum(20)),
        "npm_install_step_for_the_frontend_build_cache",
        &format!("npm_{}", alnum(35)),
        "SG.1.2",
        &format!("SG.{}.{}", alnum(22), alnum(42)),
        "sk-proj-short",
        "sk-project-settings-page",
    ]);
}

#[test]
fn saas_tokens_can_be_hashed_or_turned_off() {
    let t = format!("ghp_{}", alnum(36));
    let mut off = plugin(r#"{"detectors": {"saas_tokens": "off"}}"#);
    assert_eq!(redact_with(&mut off, &t), t);
    let mut hashed = plugin(
        r#"{"detectors": {"saas_tokens": "hash"}, "hash_keys": {"k1": "0123456789abcdef0123456789abcdef"}}"#,
    );
    let out = redact_with(&mut hashed, &format!("token {t}"));
    assert!(
        out.starts_with("token hmac:k1:") && out.len() == 6 + 8 + 32,
        "{out}"
    );
}

// ------------------------------------------------------------------------ national_id

#[test]
fn social_security_numbers() {
    assert_eq!(redact("ssn 123-45-6789 on file"), "ssn [REDACTED] on file");
    assert_eq!(redact("SSN: 536 22 8917."), "SSN: [REDACTED].");
    assert_eq!(redact("(536-22-8917)"), "([REDACTED])");
    assert_eq!(
        redact(r#"{"ssn":"078-05-1120"}"#),
        r#"{"ssn":"[REDACTED]"}"#
    );
    assert_eq!(redact("ssn=899-99-9999&x=1"), "ssn=[REDACTED]&x=1");
    assert_eq!(
        redact("/users/123-45-6789/profile"),
        "/users/[REDACTED]/profile"
    );
    assert_eq!(
        redact("a 001-01-0001, b 665-12-3456"),
        "a [REDACTED], b [REDACTED]"
    );
}

#[test]
fn numbers_the_ssa_never_issues_are_left_alone() {
    untouched(&[
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-99-9999",
        "123-00-4567",
        "123-45-0000",
        "000 12 3456",
    ]);
}

#[test]
fn ssn_look_alikes_are_left_alone() {
    untouched(&[
        // Dates and timestamps.
        "2024-01-15",
        "2024-01-15T10:20:30Z",
        "2024-01-15 10:20:30.123",
        // Order numbers and identifiers with more digits or a prefix.
        "order 123-45-67890",
        "order ORD-123-45-6789",
        "ref 4123-45-6789",
        "v123-45-6789",
        "123-45-6789-01",
        "id_123-45-6789",
        // Phone numbers.
        "call 555-123-4567",
        "call +1-123-45-6789",
        "tel +44 020 12 3456 7",
        "call 1 123 45 6789",
        // Versions.
        "1.123-45-6789",
        "123-45-6789.2",
        "v10.22.333",
        "1.2.3",
        // Bare nine digits, and mixed separators.
        "123456789",
        "id 123456789 ok",
        "123-45 6789",
        "123 45-6789",
    ]);
}

// ------------------------------------------------------------------------ percent-encoded text

#[test]
fn percent_encoded_values_are_found_and_masked_as_written() {
    assert_eq!(
        redact("GET /signup?email=jane.doe%40example.com&x=1"),
        "GET /signup?email=[REDACTED]&x=1"
    );
    assert_eq!(redact("to=jane.doe%40Example.COM"), "to=[REDACTED]");
    assert_eq!(redact("q=amy%40example.org%20x"), "q=[REDACTED]%20x");
    // Lowercase hex, and other escapes around the match.
    assert_eq!(
        redact("next=%2Fhome%3Fu%3dbob%40example.com"),
        "next=%2Fhome%3Fu%3d[REDACTED]"
    );
    // Plain and encoded in one string: both found, each masked once.
    assert_eq!(
        redact("bob@example.com?ref=amy%40example.org"),
        "[REDACTED]?ref=[REDACTED]"
    );
    // Other detectors see the decoded text too.
    assert_eq!(redact("ssn=123%2D45%2D6789&x=1"), "ssn=[REDACTED]&x=1");
    assert_eq!(
        redact(&format!("state=%7B%22k%22%3A%22ghp_{}%22%7D", alnum(36))),
        "state=%7B%22k%22%3A%22[REDACTED]%22%7D"
    );
    assert_eq!(
        redact("pem=-----BEGIN%20PRIVATE%20KEY-----%0AMIIB%0A-----END%20PRIVATE%20KEY-----&x=1"),
        "pem=[REDACTED]&x=1"
    );
    assert_eq!(redact("to=%2B14155552671"), "to=[REDACTED]");
    // Multi-byte characters and their escapes (not decoded) keep their places.
    assert_eq!(
        redact("café caf%C3%A9 jane%40example.com é"),
        "café caf%C3%A9 [REDACTED] é"
    );
}

#[test]
fn matches_in_plain_and_decoded_text_do_not_overlap() {
    // The raw scan finds the whole value, the decoded one only `abc`: the longer match wins.
    assert_eq!(
        redact("/x?token=abc%26def&page=2"),
        "/x?token=[REDACTED]&page=2"
    );
    // The same match found in both scans is one hit, counted once.
    let h = hits("{}", "mail bob@example.com?u=%20");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].range, 5..20);
    let h = hits("{}", "u=jane%40example.com");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].range, 2..20);
    // With custom rules (no byte pre-check) the decoded text is scanned as well, by the rules
    // too.
    let h = hits(
        r#"{"rules": [{"name": "emp", "pattern": "EMP-[0-9]{6}"}]}"#,
        "id=EMP%2D123456 mail=a%40example.com",
    );
    let ranges: Vec<_> = h.iter().map(|h| h.range.clone()).collect();
    assert_eq!(ranges, vec![3..15, 21..36], "{h:?}");
}

#[test]
fn percent_encoded_text_with_nothing_to_find_is_untouched() {
    untouched(&[
        "/search?q=red%20shoes&page=2",
        "/files/a%2Fb%2Fc.txt",
        "100% done",
        "%zz%4",
        "%",
        "name=Jos%C3%A9",
        "double=jane%2540example.com",
        "/q?tz=Europe%2FBerlin&from=2024-01-15T10%3A20%3A30Z",
    ]);
}

// ------------------------------------------------------------------------ telemetry look-alikes

#[test]
fn telemetry_identifiers_are_left_alone() {
    untouched(&[
        // Trace and span ids, a traceparent.
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // Digests and commits.
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "9fceb02",
        // UUIDs.
        "123e4567-e89b-12d3-a456-426614174000",
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        // Timestamps.
        "2024-01-15T10:20:30Z",
        "2024-01-15T10:20:30.123456789+02:00",
        "Mon, 15 Jan 2024 10:20:30 GMT",
        // Kubernetes names.
        "checkout-7d9f8b6c5-x2x9k",
        "k8s.pod.name=checkout-7d9f8b6c5-x2x9k",
        "kube-system/coredns-5d78c9869d-4xkzq",
        // Versions and images.
        "1.2.3",
        "v10.22.333",
        "registry.example.com/team/checkout:v10.22.333",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
    ]);
}

// ------------------------------------------------------------------------ configuration, pre-check

#[test]
fn new_detectors_default_to_mask_and_take_every_action() {
    let mut p = plugin("{}");
    let input = format!(
        "k {} t sk_live_{} s 123-45-6789",
        pem("PRIVATE KEY", "AAAA"),
        alnum(24)
    );
    assert_eq!(
        redact_with(&mut p, &input),
        "k [REDACTED] t [REDACTED] s [REDACTED]"
    );

    let mut off = plugin(
        r#"{"detectors": {"private_key": "off", "saas_tokens": false, "national_id": "off"}}"#,
    );
    assert_eq!(redact_with(&mut off, &input), input);

    let mut p = plugin(r#"{"detectors": {"national_id": "drop_record"}}"#);
    let mut batch = testing::logs(&["ssn 123-45-6789", "nothing here"]);
    assert_eq!(p.logs(&mut batch), Ok(Verdict::Modified));
    assert_eq!(batch.resource_logs[0].scope_logs[0].log_records.len(), 1);
}

#[test]
fn pre_check_sees_the_new_detectors_only_where_their_bytes_are() {
    let key = format!("ghp_{}", alnum(36));
    for (text, d) in [
        ("x -----BEGIN RSA PRIVATE KEY----- y", Detector::PrivateKey),
        ("-----BEGIN PRIVATE KEY-----", Detector::PrivateKey),
        (key.as_str(), Detector::SaasTokens),
        ("ssn 123-45-6789", Detector::NationalId),
        ("ssn 123 45 6789", Detector::NationalId),
    ] {
        assert!(detect::may_match(text, d.bit()), "{text}");
    }
    for (text, d) in [
        ("-----BEGIN CERTIFICATE-----", Detector::PrivateKey),
        ("-----BEGIN PUBLIC KEY----- xxxxxxxx", Detector::PrivateKey),
        ("checkout-7d9f8b6c5-x2x9k", Detector::SaasTokens),
        (
            "tests_for_the_nightly_frontend_build_42",
            Detector::SaasTokens,
        ),
        ("2024-01-15T10:20:30Z", Detector::NationalId),
        ("order 123456789", Detector::NationalId),
    ] {
        assert!(!detect::may_match(text, d.bit()), "{text}");
    }
    // The pre-check looks for prefixes, not boundaries: the regex and its check decide.
    assert!(detect::may_match(
        "disk_test_results_for_nightly_build_42",
        Detector::SaasTokens.bit()
    ));
    // Plain strings are settled by the first pass, also with the new detectors on; a pod name
    // with a `b` or an `x` takes one more pass (for `bearer`, `xoxb-`) and is then remembered as
    // clean.
    let all = u16::MAX;
    assert_eq!(
        detect::prefilter("checkout-7d9f8b6c5-x2x9k", all),
        Prefilter::CleanAfterMore
    );
    for plain in [
        "service-frontend",
        "checkout-7d9f8c6c5-p2q9w",
        "GET /users/{id}",
        "cache_hit_ratio",
        "orders.internal.example",
        "http.server.request.duration",
    ] {
        assert_eq!(detect::prefilter(plain, all), Prefilter::Clean, "{plain}");
    }
}

#[test]
fn decoding_maps_ranges_back() {
    let mut d = detect::Decoded::default();
    d.decode("a%40b%zz%C3%A9c%2f");
    assert_eq!(d.text(), "a@b%zz%C3%A9c/");
    assert_eq!(d.original(0..3), 0..5);
    assert_eq!(d.original(1..2), 1..4);
    assert_eq!(d.original(13..14), 15..18);
    assert_eq!(d.original(0..14), 0..18);
    d.decode("plain");
    assert_eq!((d.text(), d.original(1..3)), ("plain", 1..3));
    assert!(detect::has_escape(b"x%7e"));
    assert!(!detect::has_escape(b"100% %C3%A9 %7"));
}

/// Strings made of escapes, pieces of the new shapes and multi-byte characters, cut and mixed:
/// nothing panics, on the first pass or on a second one over the redacted text, and a second
/// pass finds nothing more in what the first one masked.
#[test]
fn mixed_pieces_never_panic() {
    const PIECES: &[&str] = &[
        "%",
        "%4",
        "%40",
        "%2D",
        "%2d",
        "%C3%A9",
        "%25",
        "%0A",
        "%zz",
        "é",
        "日本",
        "-",
        " ",
        "_",
        ".",
        "123",
        "45",
        "6789",
        "-----BEGIN ",
        "RSA ",
        "PRIVATE KEY",
        "-----END ",
        "-----",
        "sk_live_",
        "ghp_",
        "xoxb-",
        "1234567890",
        "AIza",
        "glpat-",
        "npm_",
        "SG.",
        "sk-proj-",
        "a7Kq2ZfR9mXc4TbW",
        "bob",
        "example.com",
        "@",
        "[REDACTED]",
    ];
    let mut p = plugin("{}");
    let mut next = seeded(0x2545_f491_4f6c_dd1d);
    for _ in 0..3000 {
        let n = next(14);
        let text: String = (0..n).map(|_| PIECES[next(PIECES.len())]).collect();
        let once = redact_with(&mut p, &text);
        redact_with(&mut p, &once);
    }
}
