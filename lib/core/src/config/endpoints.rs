//! Listen addresses and URLs: their syntax, whether an address is loopback, and that no two
//! listeners of one gateway share an address.

use std::collections::BTreeMap;

use super::errors::{ConfigError, err};
use super::exporters::{ExporterKind, ExporterSpec};
use super::receivers::{ReceiverKind, ReceiverSpec};

pub(crate) fn check_endpoint(endpoint: &str, path: &str, errors: &mut Vec<ConfigError>) {
    let valid = endpoint
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        err(
            errors,
            path,
            format!("invalid endpoint `{endpoint}`: expected host:port, e.g. 127.0.0.1:4317"),
        );
    }
}

/// Whether a `host:port` listens on loopback only: `localhost` or a loopback address. Any other
/// name is taken as reachable from elsewhere, since validation does not resolve names.
pub fn is_loopback_endpoint(endpoint: &str) -> bool {
    let Some((host, _)) = endpoint.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn check_listeners(
    receivers: &[ReceiverSpec],
    exporters: &[ExporterSpec],
    admin: &str,
    errors: &mut Vec<ConfigError>,
) {
    let mut bound: BTreeMap<String, String> = BTreeMap::new();
    bound.insert(admin.to_string(), "service.admin.endpoint".into());
    for e in exporters {
        if let ExporterKind::Prometheus(c) = &e.kind {
            let path = format!("exporters.{}.endpoint", e.name);
            if let Some(other) = bound.get(&c.endpoint) {
                err(
                    errors,
                    &path,
                    format!("endpoint {} is already used by {other}", c.endpoint),
                );
            } else {
                bound.insert(c.endpoint.clone(), path);
            }
        }
    }
    for r in receivers {
        let ReceiverKind::Otlp(c) = &r.kind else {
            continue;
        };
        let mut check = |endpoint: &str, path: String| {
            check_endpoint(endpoint, &path, errors);
            if let Some(other) = bound.get(endpoint) {
                err(
                    errors,
                    &path,
                    format!("endpoint {endpoint} is already used by {other}"),
                );
            } else {
                bound.insert(endpoint.to_string(), path);
            }
        };
        if let Some(g) = &c.protocols.grpc {
            check(
                &g.endpoint,
                format!("receivers.{}.protocols.grpc.endpoint", r.name),
            );
        }
        if let Some(h) = &c.protocols.http {
            check(
                &h.endpoint,
                format!("receivers.{}.protocols.http.endpoint", r.name),
            );
        }
    }
}

pub(crate) fn check_url(url: &str, path: &str, errors: &mut Vec<ConfigError>) {
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.parse::<http::Uri>().is_err()
    {
        err(
            errors,
            path,
            format!("invalid endpoint `{url}`: expected a URL such as http://127.0.0.1:4317"),
        );
    }
}
