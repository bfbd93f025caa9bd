//! Values that must never reach a log line, an event or an error body in clear.
//!
//! Redaction is done by the type: a [`RedactedUrl`] prints `redis://:***@host:6379/0`
//! from both `Display` and `Debug`, and only [`RedactedUrl::expose`] gives the real text.
//! [`redact_env_value`] applies the same rule to environment variables, which is how an
//! [`EnvSnapshot`](crate::EnvSnapshot) is shown.

use std::fmt;

/// The text printed in place of a secret.
pub const REDACTED: &str = "***";

/// A URL whose password (and any token-like query parameter) is hidden when printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL as given, password included. Call only where the URL is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({})", redact_url(&self.0))
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
///
/// Text without user information is returned unchanged. A URL with a user name but no
/// password (`redis://token@host`) hides the user name, since some services take the
/// token there.
pub fn redact_url(url: &str) -> String {
    redact_query(&redact_userinfo(url))
}

/// Hides the values of query parameters that carry secrets
/// (`redis+unix:///run/redis.sock?db=0&pass=...`).
fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) || name.eq_ignore_ascii_case("pass") => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    let mut redacted = format!("{base}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        redacted.push('#');
        redacted.push_str(fragment);
    }
    redacted
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let hidden = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    format!("{}{}@{}", &url[..scheme_end + 3], hidden, &rest[at + 1..])
}

/// Whether an environment variable's name says that its value is a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "CREDENTIAL",
        "PRIVATE_KEY",
    ]
    .iter()
    .any(|marker| upper.contains(marker))
}

/// The value of an environment variable as it may be shown: secrets by name are replaced
/// whole, URLs lose their password, everything else is kept.
pub fn redact_env_value(name: &str, value: &str) -> String {
    if is_secret_name(name) {
        return REDACTED.to_string();
    }
    redact_url(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_password_in_url() {
        let url = RedactedUrl::new("redis://:hunter2@127.0.0.1:6379/0");
        assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6379/0");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.expose(), "redis://:hunter2@127.0.0.1:6379/0");
    }

    #[test]
    fn keeps_user_name_and_hides_lone_token() {
        assert_eq!(redact_url("redis://alice:pw@h:1"), "redis://alice:***@h:1");
        assert_eq!(redact_url("https://tok@h/p?q=1"), "https://***@h/p?q=1");
        assert_eq!(redact_url("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("redis+unix:///tmp/x.sock?db=0&pass=SECRET"),
            "redis+unix:///tmp/x.sock?db=0&pass=***"
        );
        assert_eq!(
            redact_url("http://h/p?password=x&token=y&a=1"),
            "http://h/p?password=***&token=***&a=1"
        );
    }

    #[test]
    fn env_values_are_redacted_by_name_and_by_url() {
        assert_eq!(redact_env_value("OLLAMA_API_KEY", "abc"), REDACTED);
        assert_eq!(redact_env_value("GITHUB_TOKEN", "abc"), REDACTED);
        assert_eq!(
            redact_env_value("SOLLOL_REDIS_URL", "redis://:pw@h:6379"),
            "redis://:***@h:6379"
        );
        assert_eq!(redact_env_value("SOLLOL_APP_NAME", "demo"), "demo");
    }
}
