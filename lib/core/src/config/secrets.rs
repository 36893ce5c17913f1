//! Secrets in plugin configs: `${env:NAME}` references expanded from the environment (so
//! secrets stay out of config files), and secret-looking values masked for display.

use serde_yaml_ng::Value;

/// Whether a config key names a secret or a set of them (`hmac_key`, `hash_keys`, `api_token`,
/// `password`, …).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let singular = k.strip_suffix('s').unwrap_or(&k);
    [
        "secret",
        "password",
        "passwd",
        "token",
        "credential",
        "private",
        "hmac",
    ]
    .iter()
    .any(|w| k.contains(w))
        || singular == "key"
        || singular.ends_with("_key")
        || singular.ends_with("-key")
        || singular.ends_with("apikey")
}

/// Every value under a secret-named key: `"***"`, except `${env:NAME}` references, which name
/// the secret without revealing it.
fn mask_all(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::String(s) if s.starts_with("${env:") && s.ends_with('}') => J::String(s),
        J::Null => J::Null,
        J::Object(map) => J::Object(map.into_iter().map(|(k, v)| (k, mask_all(v))).collect()),
        J::Array(items) => J::Array(items.into_iter().map(mask_all).collect()),
        _ => J::String("***".into()),
    }
}

/// A plugin config for display: everything under secret-looking keys is masked.
pub fn mask_secrets(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::Object(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(&k) {
                        mask_all(v)
                    } else {
                        mask_secrets(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        J::Array(items) => J::Array(items.into_iter().map(mask_secrets).collect()),
        other => other,
    }
}

/// Replaces `${env:NAME}` in the string values of a plugin's config with the variable's value,
/// so secrets (hash keys, tokens) stay out of config files; plugins themselves see no
/// environment. A variable that is not set is an error.
pub(crate) fn expand_env(value: Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(expand_env_str(&s, path)?),
        Value::Sequence(seq) => Value::Sequence(
            seq.into_iter()
                .map(|v| expand_env(v, path))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| Ok((k, expand_env(v, path)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other,
    })
}

fn expand_env_str(s: &str, path: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{env:...}} in a value under {path}"))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            format!("environment variable `{name}` (used as ${{env:{name}}}) is not set")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
