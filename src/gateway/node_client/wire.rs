//! HTTP/1.1 as the proxy writes it to a node and reads it back: the request head, and
//! the response head with what it says about the body's framing.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpRequest;
use bytes::{BufMut, BytesMut};

/// Response heads longer than this are refused.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Response headers beyond this many are refused.
const MAX_HEADERS: usize = 100;

/// How the request body is framed on the wire.
pub enum RequestFraming {
    Length(usize),
    Chunked,
}

/// Headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (in any case) belongs to one connection only.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name))
}

/// Whether a client's request header goes on to the node. Host is the node's own; Origin
/// would make a loopback Ollama answer 403; the body is relayed as it comes, so no
/// compressed encodings are asked for; the gateway answered the client's `Expect` itself
/// and sends the body at once; sollol's own headers stay here.
pub fn forwarded(name: &str) -> bool {
    !(is_hop_by_hop(name)
        || matches!(
            name,
            "host" | "content-length" | "origin" | "accept-encoding" | "expect"
        )
        || name.starts_with("x-sollol-"))
}

/// Writes the head of `request` as the node at `host` (`host:port`) receives it: same
/// method, path, query and headers, `Host` set to the node, and the body's framing.
pub fn write_request_head(
    out: &mut BytesMut,
    request: &HttpRequest,
    host: &str,
    framing: &RequestFraming,
) {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.put_slice(request.method().as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path_and_query.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(host.as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in request.headers() {
        if !forwarded(name.as_str()) {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Length(0) if matches!(request.method().as_str(), "GET" | "HEAD") => {}
        RequestFraming::Length(length) => {
            out.put_slice(b"content-length: ");
            out.put_slice(length.to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the node closes the connection.
    UntilClose,
}

/// Whether a node's answer header goes on to the client: not the ones that belong to the
/// connection, nor the ones the gateway's server writes itself.
pub fn passed_on(name: &str) -> bool {
    !(is_hop_by_hop(name)
        || ["content-length", "date", "server"]
            .iter()
            .any(|own| own.eq_ignore_ascii_case(name)))
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// The headers that go on to the client (see [`passed_on`]).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub framing: ResponseFraming,
    /// The connection may carry another request once the body is read.
    pub reusable: bool,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(known, _)| known.as_str() == name)
            .map(|(_, value)| value)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the node's answer is not valid HTTP/1.1: {0}")]
    Invalid(String),
    #[error("the node's answer head is longer than {MAX_HEAD_BYTES} bytes")]
    TooLong,
}

/// Parses a response head from the front of `buffer`: `Ok(Some((head, length)))` once it
/// is complete (`length` bytes of head), `Ok(None)` when more bytes are needed.
pub fn parse_response_head(
    buffer: &[u8],
    head_request: bool,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD_BYTES => {
            return Err(HeadError::TooLong)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(HeadError::Invalid(err.to_string())),
    };
    let status = response.code.unwrap_or_default();
    let mut reusable = response.version == Some(1);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut kept = Vec::with_capacity(response.headers.len());
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| HeadError::Invalid("bad content-length".into()))?;
            if content_length.is_some_and(|known| known != value) {
                return Err(HeadError::Invalid("conflicting content-length".into()));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            let value = header.value;
            if value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                reusable = false;
            } else if value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
            {
                reusable = true;
            }
        }
        if !passed_on(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            kept.push((name, value));
        }
    }
    let framing = if head_request || status == 204 || status == 304 || (100..200).contains(&status)
    {
        ResponseFraming::Empty
    } else if chunked {
        ResponseFraming::Chunked
    } else if let Some(length) = content_length {
        ResponseFraming::Length(length)
    } else {
        reusable = false;
        ResponseFraming::UntilClose
    };
    Ok(Some((
        ResponseHead {
            status,
            headers: kept,
            framing,
            reusable,
        },
        length,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_with_a_length_is_parsed_and_reusable() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let (head, length) = parse_response_head(raw, false).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(length, raw.len() - 2);
        assert_eq!(head.framing, ResponseFraming::Length(2));
        assert!(head.reusable);
        assert_eq!(head.header("content-type").unwrap(), "application/json");
    }

    #[test]
    fn only_headers_meant_for_the_client_are_kept() {
        let raw = b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-Model: m\r\nContent-Type: text/plain\r\n\r\n";
        let (head, _) = parse_response_head(raw, false).unwrap().unwrap();
        let names: Vec<&str> = head.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-model", "content-type"]);
    }

    #[test]
    fn chunked_wins_and_close_is_honoured() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let (head, _) = parse_response_head(raw, false).unwrap().unwrap();
        assert_eq!(head.framing, ResponseFraming::Chunked);
        assert!(!head.reusable);
    }

    #[test]
    fn without_length_the_body_runs_to_close() {
        let raw = b"HTTP/1.1 200 OK\r\n\r\nabc";
        let (head, _) = parse_response_head(raw, false).unwrap().unwrap();
        assert_eq!(head.framing, ResponseFraming::UntilClose);
        assert!(!head.reusable);
        let (head, _) = parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!head.reusable, "HTTP/1.0 closes by default");
    }

    #[test]
    fn partial_heads_wait_and_bad_ones_fail() {
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-", false)
            .unwrap()
            .is_none());
        assert!(parse_response_head(b"garbage\r\n\r\n", false).is_err());
        let conflicting = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(parse_response_head(conflicting, false).is_err());
        let huge = vec![b'a'; MAX_HEAD_BYTES + 1];
        let mut raw = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        raw.extend_from_slice(&huge);
        assert_eq!(
            parse_response_head(&raw, false).unwrap_err(),
            HeadError::TooLong
        );
    }

    #[test]
    fn heads_and_no_content_have_no_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let (head, _) = parse_response_head(raw, true).unwrap().unwrap();
        assert_eq!(head.framing, ResponseFraming::Empty);
        let (head, _) = parse_response_head(b"HTTP/1.1 204 No Content\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, ResponseFraming::Empty);
        assert!(head.reusable);
    }
}
