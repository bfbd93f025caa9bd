//! Who may talk to the gateway from a browser, and under which host name: the same rules
//! an Ollama server applies, so putting sollol in front of Ollama opens no new door.
//!
//! - **Host.** While the gateway listens on a loopback address, a request whose `Host` is
//!   not a local name (`localhost`, `*.localhost`, `*.local`, `*.internal`, a loopback,
//!   private or unspecified address, this machine's name) is refused with an empty 403.
//!   That stops DNS-rebinding pages from reaching it through a browser.
//! - **CORS.** A request with an `Origin` that is not allowed gets an empty 403. Allowed:
//!   the same origin, `http(s)://localhost`, `127.0.0.1` and `0.0.0.0` on any port, the
//!   `app://`, `file://`, `tauri://`, `vscode-webview://` and `vscode-file://` schemes,
//!   and whatever `origins` (or `OLLAMA_ORIGINS`) adds. Preflight requests get 204 with
//!   the allowed methods and headers.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, \
     X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, \
     X-Stainless-Runtime-Version, X-Stainless-Async, X-Stainless-Helper-Method, X-Stainless-Poll-Helper, \
     X-Stainless-Custom-Poll-Interval, X-Stainless-Timeout, X-Stainless-Retry-Count, X-Sollol-Strategy, \
     X-Sollol-Priority, X-Sollol-Session, X-Sollol-Node";

/// Host names of the browser origins Ollama accepts on any port. These are names pages
/// are served from, never an address sollol listens on (it binds 127.0.0.1 by default).
const LOCAL_ORIGIN_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "0.0.0.0", "[::1]"];

#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// Check `Host` (the gateway listens on loopback).
    pub check_host: bool,
    /// Origins allowed on top of the built-in local ones (`*` allows any).
    pub extra_origins: Vec<String>,
    pub hostname: String,
}

impl AccessPolicy {
    pub fn new(bind: &str, extra_origins: Vec<String>) -> Self {
        let host = bind
            .rsplit_once(':')
            .map_or(bind, |(host, _)| host)
            .trim_matches(['[', ']']);
        let check_host =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        Self {
            check_host,
            extra_origins,
            hostname: sollol_actors::clock::hostname().to_ascii_lowercase(),
        }
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        if !self.check_host {
            return true;
        }
        let name = strip_port(host);
        // The usual case first, without parsing an address.
        if name == "127.0.0.1" {
            return true;
        }
        if name.eq_ignore_ascii_case("localhost") || name.eq_ignore_ascii_case(&self.hostname) {
            return true;
        }
        if [".localhost", ".local", ".internal"].iter().any(|suffix| {
            name.len() >= suffix.len()
                && name.as_bytes()[name.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        }) {
            return true;
        }
        match name.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => {
                ip.is_loopback() || ip.is_private() || ip.is_unspecified() || ip.is_link_local()
            }
            Ok(IpAddr::V6(ip)) => {
                ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00
            }
            Err(_) => false,
        }
    }

    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/');
        if self
            .extra_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.trim_end_matches('/') == origin)
        {
            return true;
        }
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        match scheme {
            "app" | "file" | "tauri" | "vscode-webview" | "vscode-file" => true,
            "http" | "https" => {
                if host.is_some_and(|host| host.eq_ignore_ascii_case(rest)) {
                    return true;
                }
                LOCAL_ORIGIN_HOSTS.contains(&strip_port(rest))
            }
            _ => false,
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(ip, _)| &host[..ip.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

/// The middleware: refuses foreign hosts and origins, answers preflights, and marks
/// allowed cross-origin answers.
pub async fn guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let policy = request
        .app_data::<web::Data<Arc<AccessPolicy>>>()
        .map(|p| p.get_ref().clone());
    let Some(policy) = policy else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    // Read with borrowed text; only a cross-origin request needs owned copies.
    let (refused_host, origin, host) = {
        let headers = request.headers();
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let refused_host = host
            .filter(|host| !policy.host_allowed(host))
            .map(str::to_string);
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let host = origin.as_ref().and(host).map(str::to_string);
        (refused_host, origin, host)
    };
    if let Some(host) = refused_host {
        tracing::debug!(host = %host, "refused a request for a foreign host name");
        return Ok(request
            .into_response(HttpResponse::Forbidden().finish())
            .map_into_right_body());
    }
    let Some(origin) = origin else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    if !policy.origin_allowed(&origin, host.as_deref()) {
        tracing::debug!(origin = %origin, "refused a request from a foreign origin");
        return Ok(request
            .into_response(HttpResponse::Forbidden().finish())
            .map_into_right_body());
    }
    let allow_origin =
        HeaderValue::from_str(&origin).unwrap_or_else(|_| HeaderValue::from_static("null"));
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let preflight = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "43200"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(request.into_response(preflight).map_into_right_body());
    }
    let mut response = next.call(request).await?;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-Sollol-Node, X-Sollol-Affinity, Retry-After"),
    );
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy::new("127.0.0.1:8000", vec!["https://chat.example.com".into()])
    }

    #[test]
    fn local_host_names_pass_and_foreign_ones_do_not() {
        let policy = policy();
        for host in [
            "localhost:8000",
            "127.0.0.1:8000",
            "10.0.0.5",
            "[::1]:8000",
            "box.local",
            "app.localhost",
            "0.0.0.0:8000",
        ] {
            assert!(policy.host_allowed(host), "{host}");
        }
        for host in ["attacker.example:8000", "example.com", "8.8.8.8"] {
            assert!(!policy.host_allowed(host), "{host}");
        }
        assert!(AccessPolicy::new("0.0.0.0:8000", vec![]).host_allowed("anything.example"));
    }

    #[test]
    fn local_and_configured_origins_pass() {
        let policy = policy();
        for origin in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "app://obsidian.md",
            "https://chat.example.com",
            "http://0.0.0.0:8080",
        ] {
            assert!(
                policy.origin_allowed(origin, Some("127.0.0.1:8000")),
                "{origin}"
            );
        }
        assert!(
            policy.origin_allowed("http://127.0.0.1:8000", Some("127.0.0.1:8000")),
            "same origin"
        );
        for origin in [
            "http://evil.example",
            "https://localhost.evil.example",
            "null",
        ] {
            assert!(
                !policy.origin_allowed(origin, Some("127.0.0.1:8000")),
                "{origin}"
            );
        }
    }
}
