//! The node actor: periodic health, inventory and residency checks.

use std::collections::BTreeSet;
use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;

use super::handle::{NodeHandle, NodeStatus};
use crate::model_name::normalize_model;

#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Time between checks.
    pub health_interval: Duration,
    /// Time allowed for each check request.
    pub health_timeout: Duration,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(5),
            health_timeout: Duration::from_secs(3),
        }
    }
}

/// Runs a check now and answers the node's status once it is done.
#[derive(Message)]
#[rtype(result = "NodeStatus")]
pub struct CheckNow;

/// Longest wait between checks of a node that does not answer.
const MAX_DOWN_INTERVAL: Duration = Duration::from_secs(30);

pub struct NodeActor {
    node: NodeHandle,
    settings: NodeSettings,
    /// Checks failed in a row; each one doubles the wait before the next.
    failed_checks: u32,
}

impl NodeActor {
    pub fn new(node: NodeHandle, settings: NodeSettings) -> Self {
        Self {
            node,
            settings,
            failed_checks: 0,
        }
    }

    /// The wait before the next check: the interval while the node answers, growing up to
    /// [`MAX_DOWN_INTERVAL`] while it does not.
    fn next_delay(&self) -> Duration {
        if self.failed_checks == 0 {
            return self.settings.health_interval;
        }
        let factor = 2u32.saturating_pow(self.failed_checks.min(8));
        (self.settings.health_interval * factor)
            .min(MAX_DOWN_INTERVAL)
            .max(self.settings.health_interval)
    }

    fn schedule(&self, ctx: &mut Context<Self>) {
        ctx.run_later(self.next_delay(), |act, ctx| {
            let check = run_check(act.node.clone(), act.settings.health_timeout);
            ctx.spawn(check.into_actor(act).map(|passed, act, ctx| {
                act.failed_checks = if passed { 0 } else { act.failed_checks + 1 };
                act.schedule(ctx);
            }));
        });
    }

    pub fn node(&self) -> &NodeHandle {
        &self.node
    }
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule(ctx);
    }
}

impl Handler<CheckNow> for NodeActor {
    type Result = ResponseFuture<NodeStatus>;

    fn handle(&mut self, _: CheckNow, _ctx: &mut Self::Context) -> Self::Result {
        let node = self.node.clone();
        let timeout = self.settings.health_timeout;
        Box::pin(async move {
            run_check(node.clone(), timeout).await;
            node.status()
        })
    }
}

#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    models: Option<Vec<ModelEntry>>,
}

#[derive(Deserialize)]
struct ModelEntry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

impl ModelList {
    fn names(self) -> BTreeSet<String> {
        self.models
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| entry.model.or(entry.name))
            .map(|name| normalize_model(&name))
            .collect()
    }
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

/// Reads inventory (required), residency and version (best effort) and records them.
/// Returns whether the node answered.
async fn run_check(node: NodeHandle, timeout: Duration) -> bool {
    let tags = async {
        // A pooled connection the node closed while idle fails without a word from the
        // node; one fresh attempt tells that apart from a node that is really gone.
        match get_json::<ModelList>(&node, "/api/tags", timeout).await {
            Err(CheckError { refused: false, .. }) => {
                get_json::<ModelList>(&node, "/api/tags", timeout).await
            }
            other => other,
        }
    };
    let ps = get_json::<ModelList>(&node, "/api/ps", timeout);
    let version = get_json::<Version>(&node, "/api/version", timeout);
    let (tags, ps, version) = futures_util::join!(tags, ps, version);
    match tags {
        Ok(tags) => {
            let loaded = ps.map(ModelList::names).unwrap_or_default();
            node.record_check(version.ok().map(|v| v.version), tags.names(), loaded);
            true
        }
        Err(err) => {
            tracing::debug!(node = %node.key(), error = %err.message, "health check failed");
            node.record_check_failure(&err.message, err.refused);
            false
        }
    }
}

struct CheckError {
    message: String,
    /// The node refused the connection: nothing listens there.
    refused: bool,
}

impl From<String> for CheckError {
    fn from(message: String) -> Self {
        Self {
            message,
            refused: false,
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    node: &NodeHandle,
    path: &str,
    timeout: Duration,
) -> Result<T, CheckError> {
    let response = node
        .client()
        .get(node.endpoint(path))
        .header(reqwest::header::HOST, node.host_header())
        .timeout(timeout)
        .send()
        .await
        .map_err(|err| CheckError {
            message: format!("GET {path}: {}", describe_reqwest_error(&err)),
            refused: err.is_connect(),
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {path}: HTTP {}", status.as_u16()).into());
    }
    let body = response
        .bytes()
        .await
        .map_err(|err| format!("GET {path}: {}", describe_reqwest_error(&err)))?;
    serde_json::from_slice(&body).map_err(|err| format!("GET {path}: invalid json: {err}").into())
}

/// A short description of a transport error, with its innermost cause.
pub fn describe_reqwest_error(err: &reqwest::Error) -> String {
    let kind = if err.is_connect() {
        "connection failed"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_body() || err.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        source = next;
    }
    format!("{kind}: {source}")
}
