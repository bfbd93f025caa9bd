//! Node addresses, read the way Ollama clients read `OLLAMA_HOST`.

use reqwest::Url;

pub const DEFAULT_OLLAMA_PORT: u16 = 11434;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeUrlError {
    #[error("node address is empty")]
    Empty,
    #[error("node address `{0}` is not a valid url")]
    Invalid(String),
    #[error("node address `{0}` uses https, which this build does not support; use http")]
    HttpsUnsupported(String),
    #[error("node address `{0}` has an unsupported scheme; use http://host:port")]
    UnsupportedScheme(String),
}

/// Parses `host`, `host:port`, `:port` or `http://host[:port][/path]`.
///
/// A bare host gets Ollama's port 11434; `http://host` without a port means port 80, as
/// in the official clients. The path, if any, is kept as a prefix for every request.
pub fn parse_node_url(text: &str) -> Result<Url, NodeUrlError> {
    let text = text.trim().trim_end_matches('/');
    if text.is_empty() {
        return Err(NodeUrlError::Empty);
    }
    if text.starts_with("https://") {
        return Err(NodeUrlError::HttpsUnsupported(text.to_string()));
    }
    if text.contains("://") && !text.starts_with("http://") {
        return Err(NodeUrlError::UnsupportedScheme(text.to_string()));
    }
    let with_scheme = if text.starts_with("http://") {
        text.to_string()
    } else if let Some(port) = text.strip_prefix(':') {
        format!("http://127.0.0.1:{port}")
    } else {
        let host_end = text.find('/').unwrap_or(text.len());
        let (host, path) = text.split_at(host_end);
        if has_port(host) {
            format!("http://{text}")
        } else {
            format!("http://{host}:{DEFAULT_OLLAMA_PORT}{path}")
        }
    };
    let url = Url::parse(&with_scheme).map_err(|_| NodeUrlError::Invalid(text.to_string()))?;
    if url.host_str().is_none() {
        return Err(NodeUrlError::Invalid(text.to_string()));
    }
    Ok(url)
}

fn has_port(host: &str) -> bool {
    match host.rfind(']') {
        Some(close) => host[close..].contains(':'),
        None => host.contains(':'),
    }
}

/// The `host:port` key that names a node everywhere (events, headers, stats).
pub fn node_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(DEFAULT_OLLAMA_PORT);
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_ollama_client_rules() {
        let key = |s: &str| node_key(&parse_node_url(s).expect("valid"));
        assert_eq!(key("10.0.0.5"), "10.0.0.5:11434");
        assert_eq!(key("gpu-box:8080"), "gpu-box:8080");
        assert_eq!(key(":5000"), "127.0.0.1:5000");
        assert_eq!(key("http://gpu-box"), "gpu-box:80");
        assert_eq!(key("http://127.0.0.1:11434/"), "127.0.0.1:11434");
        assert_eq!(key("[::1]:9000"), "[::1]:9000");
        assert_eq!(
            parse_node_url("box/ollama").expect("valid").as_str(),
            "http://box:11434/ollama"
        );
        assert_eq!(parse_node_url(" "), Err(NodeUrlError::Empty));
        assert!(matches!(
            parse_node_url("https://x"),
            Err(NodeUrlError::HttpsUnsupported(_))
        ));
    }
}
