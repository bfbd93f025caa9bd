//! Test helpers: a simulated node on `127.0.0.1:0` and a raw HTTP/1.1 client that shows the
//! exact bytes on the wire (headers, chunk framing, whether the body was complete).

#![allow(dead_code)] // Each test file uses a different subset.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_rt::net::TcpStream;
use actix_web::dev::ServerHandle;
use serde_json::Value;
use sollol_sim::{Sim, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running node.
pub struct Node {
    pub addr: SocketAddr,
    pub sim: Sim,
    handle: ServerHandle,
}

impl Node {
    /// Starts a node with `config` on a fresh loopback port.
    pub fn start(config: SimConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let sim = Sim::new(config);
        let server = sollol_sim::serve(sim.clone(), listener).expect("server builds");
        let handle = server.handle();
        actix_rt::spawn(server);
        Self { addr, sim, handle }
    }

    /// A node with these models and no delays.
    pub fn with_models(models: &[&str]) -> Self {
        Self::start(SimConfig {
            models: models.iter().map(|name| (*name).to_owned()).collect(),
            ..SimConfig::default()
        })
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send("GET", path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Response {
        self.send("POST", path, Some(body), &[]).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Response {
        request(self.addr, method, path, body, headers).await
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A response as it came off the socket.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it was chunked.
    pub body: Vec<u8>,
    /// Whether the body ended properly (terminating chunk or full Content-Length).
    pub complete: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// NDJSON lines, each checked to end with `\n`.
    pub fn lines(&self) -> Vec<Value> {
        let text = self.text();
        assert!(
            text.ends_with('\n'),
            "stream must end with a newline: {text:?}"
        );
        text.split_terminator('\n')
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }

    /// The `data:` payloads of an SSE body, each frame checked to end with a blank line.
    pub fn events(&self) -> Vec<String> {
        let text = self.text();
        assert!(
            text.ends_with("\n\n"),
            "SSE must end with a blank line: {text:?}"
        );
        text.split_terminator("\n\n")
            .map(|frame| {
                frame
                    .strip_prefix("data: ")
                    .expect("every frame is a data line")
                    .to_owned()
            })
            .collect()
    }
}

/// Sends one request on a fresh connection and reads until the response is complete or the
/// server closes the connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the node");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or_default());
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the request");

    let head_request = method == "HEAD";
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
            }
            // Stop at the end of the message, as a real client does, instead of waiting for
            // the server to close (it lingers when a request body was left unread).
            if try_parse(&raw, head_request).is_some_and(|response| response.complete) {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the node did not finish the response in time");
    try_parse(&raw, head_request).expect("a complete response head")
}

/// Parses what has arrived so far; `None` until the head is complete.
fn try_parse(raw: &[u8], head_request: bool) -> Option<Response> {
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).expect("ascii head");
    let rest = &raw[split + 4..];

    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();

    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let (body, complete) = if chunked {
        dechunk(rest)
    } else if head_request {
        (rest.to_vec(), true)
    } else {
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse::<usize>().ok());
        let complete = length.is_some_and(|length| rest.len() >= length);
        (rest.to_vec(), complete)
    };
    Some(Response {
        status,
        headers,
        body,
        complete,
    })
}

/// Decodes a chunked body; `complete` is whether the zero-length terminator arrived.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|window| window == b"\r\n") else {
            return (body, false);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.trim(), 16).expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (body, true);
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The Euclidean length of a JSON array of numbers.
pub fn norm(vector: &Value) -> f64 {
    vector
        .as_array()
        .expect("a vector")
        .iter()
        .map(|value| value.as_f64().expect("a number").powi(2))
        .sum::<f64>()
        .sqrt()
}
