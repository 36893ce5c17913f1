//! Each request's correlation id: on its log lines, its spans, and its answer's
//! `X-Correlation-ID`, so an operator can follow one request through the gateway.

use std::sync::Arc;

/// The request's correlation id, put in the request's extensions by the server's middleware.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub Arc<str>);

/// A correlation id for a request: the trace id of a W3C `traceparent`, else the client's
/// `X-Correlation-ID`, else a new random one.
pub fn correlation_id(headers: &http::HeaderMap) -> Arc<str> {
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        let mut parts = tp.split('-');
        if let (Some(_version), Some(trace_id)) = (parts.next(), parts.next())
            && trace_id.len() == 32
            && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return trace_id.to_ascii_lowercase().into();
        }
    }
    if let Some(id) = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
    {
        return id.into();
    }
    let n: u128 = rand::random();
    format!("{n:032x}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_id_prefers_traceparent() {
        let mut h = http::HeaderMap::new();
        h.insert("x-correlation-id", "abc".parse().expect("valid"));
        assert_eq!(&*correlation_id(&h), "abc");
        h.insert(
            "traceparent",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"
                .parse()
                .expect("valid"),
        );
        assert_eq!(&*correlation_id(&h), "0af7651916cd43dd8448eb211c80319c");
        let generated = correlation_id(&http::HeaderMap::new());
        assert_eq!(generated.len(), 32);
    }
}
