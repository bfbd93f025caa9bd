//! sollol's request headers: `X-Sollol-Strategy`, `X-Sollol-Priority`,
//! `X-Sollol-Session` and `X-Sollol-Node`.

use actix_web::http::header::HeaderMap;
use sollol_actors::router::Strategy;

use super::error::GatewayError;

pub const STRATEGY_HEADER: &str = "x-sollol-strategy";
pub const PRIORITY_HEADER: &str = "x-sollol-priority";
pub const SESSION_HEADER: &str = "x-sollol-session";
pub const NODE_HEADER: &str = "x-sollol-node";
pub const AFFINITY_HEADER: &str = "x-sollol-affinity";
/// Default priority when neither the header nor the body gives one.
pub const DEFAULT_PRIORITY: u8 = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controls {
    pub strategy: Option<Strategy>,
    pub priority: Option<u8>,
    pub session: Option<String>,
    /// `host:port` of the node the client asks for.
    pub node: Option<String>,
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, GatewayError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()).filter(|v| !v.is_empty()))
            .map_err(|_| GatewayError::bad_request(format!("header {name} is not valid text"))),
    }
}

impl Controls {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, GatewayError> {
        // Most requests carry none: one pass over the names instead of four lookups.
        if !headers
            .keys()
            .any(|name| name.as_str().starts_with("x-sollol-"))
        {
            return Ok(Self::default());
        }
        let strategy = text(headers, STRATEGY_HEADER)?
            .map(|value| {
                value.parse::<Strategy>().map_err(|err| {
                    GatewayError::bad_request(format!("header X-Sollol-Strategy: {err}"))
                })
            })
            .transpose()?;
        let priority = text(headers, PRIORITY_HEADER)?
            .map(|value| match value.parse::<u8>() {
                Ok(p) if (1..=10).contains(&p) => Ok(p),
                _ => Err(GatewayError::bad_request(format!(
                    "header X-Sollol-Priority must be a whole number from 1 to 10, not `{value}`"
                ))),
            })
            .transpose()?;
        let node = text(headers, NODE_HEADER)?.map(|value| {
            value
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        });
        Ok(Self {
            strategy,
            priority,
            session: text(headers, SESSION_HEADER)?.map(String::from),
            node,
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn reads_and_validates_the_headers() {
        let controls = Controls::from_headers(&headers(&[
            ("x-sollol-strategy", "least_loaded"),
            ("x-sollol-priority", "9"),
            ("x-sollol-session", "abc"),
            ("x-sollol-node", "http://127.0.0.1:5000/"),
        ]))
        .expect("valid");
        assert_eq!(controls.strategy, Some(Strategy::LeastLoaded));
        assert_eq!(controls.priority, Some(9));
        assert_eq!(controls.session.as_deref(), Some("abc"));
        assert_eq!(controls.node.as_deref(), Some("127.0.0.1:5000"));

        let err = Controls::from_headers(&headers(&[("x-sollol-priority", "11")])).unwrap_err();
        assert!(err.message.contains("1 to 10"), "{}", err.message);
        let err = Controls::from_headers(&headers(&[("x-sollol-strategy", "magic")])).unwrap_err();
        assert!(err.message.contains("round_robin"), "{}", err.message);
        assert_eq!(
            Controls::from_headers(&HeaderMap::new()).expect("empty"),
            Controls::default()
        );
    }
}
