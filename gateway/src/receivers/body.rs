//! Request bodies: content types, content encodings, and size limits that hold *after*
//! decompression, so a small gzip or zstd body that inflates to gigabytes is refused after at
//! most `limit + 1` bytes of output.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;

use super::ReceiverError;

/// The two OTLP/HTTP body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    pub fn from_content_type(value: Option<&str>) -> Result<Format, ReceiverError> {
        let raw = value.unwrap_or("");
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(ReceiverError::UnsupportedMediaType(if raw.is_empty() {
                "(none)".into()
            } else {
                raw.into()
            })),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    pub fn from_header(value: Option<&str>) -> Result<Encoding, ReceiverError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
            Some("zstd") => Ok(Encoding::Zstd),
            Some(other) => Err(ReceiverError::UnsupportedEncoding(other.to_string())),
        }
    }
}

/// Decompresses `body`, refusing as soon as the output passes `limit` bytes.
pub fn decode_body(encoding: Encoding, body: Bytes, limit: usize) -> Result<Bytes, ReceiverError> {
    let corrupt = |name: &str, e: std::io::Error| ReceiverError::CorruptEncoding {
        encoding: name.into(),
        detail: e.to_string(),
    };
    let out = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(ReceiverError::TooLarge {
                    limit,
                    decompressed: false,
                });
            }
            return Ok(body);
        }
        Encoding::Gzip => read_limited(flate2::read::MultiGzDecoder::new(&body[..]), limit)
            .map_err(|e| corrupt("gzip", e))?,
        Encoding::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(&body[..]).map_err(|e| corrupt("zstd", e))?;
            read_limited(decoder, limit).map_err(|e| corrupt("zstd", e))?
        }
    };
    match out {
        Some(v) => Ok(v.into()),
        None => Err(ReceiverError::TooLarge {
            limit,
            decompressed: true,
        }),
    }
}

/// Reads at most `limit` bytes; `None` if there were more.
fn read_limited(reader: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(limit.min(256 * 1024));
    let read = reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    Ok((read <= limit).then_some(out))
}

/// Reads a body of at most `limit` bytes within `timeout`. A body over the limit is read on
/// and thrown away (see [`drain`]) before the 413, so the client reads the answer.
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ReceiverError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ReceiverError::ReadTimeout(timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ReceiverError::BodyRead(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            drop(parts);
            drain(
                body,
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            )
            .await;
            return Err(ReceiverError::TooLarge {
                limit,
                decompressed: false,
            });
        }
        parts.push(data);
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut out = Vec::with_capacity(total);
            for p in parts {
                out.extend_from_slice(&p);
            }
            out.into()
        }
    })
}

/// Most bytes of a refused body read and thrown away before answering; past it (or past the
/// read timeout) the connection is closed.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads and discards what is left of `body`, up to [`DRAIN_LIMIT`] bytes and `timeout`: an
/// HTTP client still sending a body it was refused for then reads the answer, where closing
/// at once would reset the connection under it (a broken pipe instead of a 413).
pub async fn drain(mut body: Body, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout.min(Duration::from_secs(10));
    let mut read = 0usize;
    while read <= DRAIN_LIMIT {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len());
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).expect("in memory");
        e.finish().expect("in memory").into()
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).ok(),
            Some(Format::Protobuf)
        );
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).ok(),
            Some(Format::Json)
        );
        assert!(matches!(
            Format::from_content_type(Some("text/plain")),
            Err(ReceiverError::UnsupportedMediaType(_))
        ));
        assert!(Encoding::from_header(Some("br")).is_err());
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        // 64 MiB of zeros compresses to ~64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 200_000);
        let err = decode_body(Encoding::Gzip, bomb, 1 << 20).expect_err("over limit");
        assert!(matches!(
            err,
            ReceiverError::TooLarge {
                decompressed: true,
                ..
            }
        ));
    }

    #[test]
    fn gzip_and_zstd_round_trip_and_corruption() {
        let data = b"hello otlp".repeat(100);
        assert_eq!(
            decode_body(Encoding::Gzip, gzip(&data), 1 << 20).expect("valid"),
            &data[..]
        );
        let z: Bytes = zstd::bulk::compress(&data, 3).expect("in memory").into();
        assert_eq!(
            decode_body(Encoding::Zstd, z, 1 << 20).expect("valid"),
            &data[..]
        );
        let err = decode_body(Encoding::Gzip, Bytes::from_static(b"not gzip"), 1 << 20)
            .expect_err("corrupt");
        assert!(matches!(err, ReceiverError::CorruptEncoding { .. }));
        let exact = decode_body(Encoding::Gzip, gzip(&data), data.len()).expect("at limit");
        assert_eq!(exact.len(), data.len());
    }
}
