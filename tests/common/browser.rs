//! Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol, so
//! a test can load a page, wait for what a person would see, and take a screenshot.
//!
//! The browser listens for DevTools on a loopback port it picks itself, with a fresh
//! profile directory, and is killed when the [`Browser`] is dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Browser {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _process: Process,
}

/// The chromium process and its profile, removed when dropped (a failed start included).
struct Process {
    child: Child,
    profile: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "chromium is not installed; install Debian's package with \
         `apt-get update && apt-get install -y chromium` (.ci/run does this)"
    );
}

impl Browser {
    /// Opens `url` in a new headless browser.
    pub fn open(url: &str) -> Self {
        let profile = std::env::temp_dir().join(format!(
            "sollol-chromium-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&profile).expect("profile directory");
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1400,1100",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let mut process = Process { child, profile };
        let stderr = process.child.stderr.take().expect("stderr piped");
        let (found, endpoint) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = found.send(line[at..].trim().to_string());
                }
            }
        });
        let browser_ws = endpoint
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed its DevTools address");
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .expect("port")
            .to_string();
        let page_ws = page_socket_url(&port);
        let (socket, _) = tungstenite::connect(page_ws.as_str()).expect("devtools websocket");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
        }
        Self {
            socket,
            next_id: 0,
            _process: process,
        }
    }

    /// Sends one DevTools command and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .expect("send to devtools");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let message = self.socket.read().expect("devtools reply");
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).expect("json reply");
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
        panic!("no reply to {method}");
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// The visible text of the element with this id.
    pub fn text(&mut self, id: &str) -> String {
        let expression = format!("(document.getElementById('{id}') || {{}}).innerText || ''");
        self.eval(&expression)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls the text of `id` until `check` accepts it, or panics after `limit`.
    pub fn wait_for_text(
        &mut self,
        id: &str,
        limit: Duration,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text(id);
            if check(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; #{id} shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the page.
    pub fn screenshot(&mut self, path: &Path) {
        let result = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let data = result["data"].as_str().expect("png data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 png");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

/// The DevTools websocket of the first page target.
fn page_socket_url(port: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let targets = http_get_json(port, "/json/list");
        let page = targets
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|targets| targets.iter().find(|target| target["type"] == "page"));
        if let Some(url) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
            return url.to_string();
        }
        assert!(Instant::now() < deadline, "chromium listed no page");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A small HTTP/1.1 GET of JSON from the browser's DevTools server.
fn http_get_json(port: &str, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|length| body.len() >= length) {
                return serde_json::from_str(body).ok();
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
    }
}
