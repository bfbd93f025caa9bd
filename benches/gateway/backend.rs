//! A zero-latency Ollama-shaped backend: the floor every proxy is measured against.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, `Content-Length` bodies) to answer what a
//! gateway asks of an Ollama node, and nothing else, so it costs less than any proxy in
//! front of it. It runs on its own thread with a single-threaded runtime.
//!
//! - `GET /api/version`, `/api/tags`, `/api/ps`: one resident model, `bench`.
//! - `POST /api/generate` or `/api/chat` with `"stream":false`: one fixed JSON answer.
//! - Otherwise a stream of NDJSON lines; the body's `"lines":N` and `"every_ms":D` say how
//!   many and how far apart (default one line). Every line carries `"sent_ns"`, the wall
//!   clock when it was written, so a client can tell how long the line took to reach it.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head or body the backend accepts.
const MAX_REQUEST: usize = 1 << 20;

const ANSWER: &str = concat!(
    r#"{"model":"bench","created_at":"2026-01-01T00:00:00.000000000Z","#,
    r#""response":"Ocean winter sky north island meadow copper shadow.","done":true,"#,
    r#""done_reason":"stop","context":[11231,40202,45481,94219,48001,65257,113901,6929],"#,
    r#""total_duration":86250000,"load_duration":1250000,"prompt_eval_count":9,"#,
    r#""prompt_eval_duration":4500000,"eval_count":8,"eval_duration":80000000}"#
);
const TAGS: &str = r#"{"models":[{"name":"bench:latest","model":"bench:latest","size":1}]}"#;
const VERSION: &str = r#"{"version":"0.12.6"}"#;

/// Starts the backend on `127.0.0.1:0`; it serves until the process ends.
pub fn start() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the backend");
    listener.set_nonblocking(true).expect("non-blocking");
    let address = listener.local_addr().expect("backend address");
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("backend runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream));
                }
            });
        })
        .expect("backend thread");
    address
}

/// The wall clock in nanoseconds: the same clock for every process on the machine.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = BytesMut::with_capacity(8192);
    loop {
        // The head, then as much body as it announces.
        let head_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            if buffer.len() > MAX_REQUEST || !read_more(&mut stream, &mut buffer).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let length = content_length(&head);
        if length > MAX_REQUEST {
            return;
        }
        while buffer.len() < head_end + length {
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.advance(head_end + length);

        let path = head.split(' ').nth(1).unwrap_or("/");
        let written = match path {
            "/api/version" => reply(&mut stream, "application/json", VERSION).await,
            "/api/tags" | "/api/ps" => reply(&mut stream, "application/json", TAGS).await,
            "/api/generate" | "/api/chat" if !contains(&body, b"\"stream\":false") => {
                stream_lines(&mut stream, &body).await
            }
            "/api/generate" | "/api/chat" => reply(&mut stream, "application/json", ANSWER).await,
            _ => reply(&mut stream, "text/plain", "Ollama is running").await,
        };
        if written.is_err() {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut BytesMut) -> bool {
    matches!(stream.read_buf(buffer).await, Ok(n) if n > 0)
}

async fn reply(stream: &mut TcpStream, content_type: &str, body: &str) -> std::io::Result<()> {
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes()).await
}

/// Writes `"lines"` NDJSON lines `"every_ms"` apart, each in its own chunk.
async fn stream_lines(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let lines = number_field(body, "lines").unwrap_or(1).max(1);
    let every = Duration::from_millis(number_field(body, "every_ms").unwrap_or(0));
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await?;
    for index in 0..lines {
        if index > 0 && !every.is_zero() {
            tokio::time::sleep(every).await;
        }
        let done = index + 1 == lines;
        let line = format!(
            "{{\"model\":\"bench\",\"created_at\":\"2026-01-01T00:00:00Z\",\"response\":\"tok\",\"done\":{done},\"sent_ns\":{}}}\n",
            now_ns()
        );
        let chunk = format!("{:x}\r\n{line}\r\n", line.len());
        stream.write_all(chunk.as_bytes()).await?;
    }
    stream.write_all(b"0\r\n\r\n").await
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// The whole number after `"name":` in a JSON body, found without parsing it.
fn number_field(body: &[u8], name: &str) -> Option<u64> {
    let key = format!("\"{name}\":");
    let start = find(body, key.as_bytes())? + key.len();
    let digits: String = body[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}
