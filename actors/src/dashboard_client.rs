//! Registration with a SOLLOL dashboard over HTTP, for dashboards that list applications
//! from their own registry rather than from Redis. Off unless a URL is configured.
//!
//! The [`DashboardClient`] registers with `POST {url}/api/applications/register`, then
//! sends `POST {url}/api/applications/heartbeat` every `heartbeat_interval` (10 s, as
//! SOLLOL's client) with the same body. Unlike SOLLOL's client it keeps trying when the
//! dashboard is not up yet, and registers again when a heartbeat is answered 404 (a
//! restarted dashboard). [`Unregister`](crate::metadata::Unregister) posts to both
//! unregister routes SOLLOL's two dashboards use, so neither keeps a stale entry.

use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};

use crate::metadata::{Application, Unregister};
use crate::secret::RedactedUrl;

#[derive(Debug, Clone)]
pub struct DashboardClientConfig {
    /// The dashboard's base URL (`SOLLOL_DASHBOARD_URL`).
    pub url: RedactedUrl,
    pub heartbeat_interval: Duration,
    pub timeout: Duration,
}

impl DashboardClientConfig {
    pub fn new(url: RedactedUrl) -> Self {
        Self {
            url,
            heartbeat_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

pub struct DashboardClient {
    config: DashboardClientConfig,
    app: Application,
    http: reqwest::Client,
    registered: bool,
    /// Whether the last attempt failed, so a dashboard that stays down is reported once.
    failing: bool,
    busy: bool,
}

impl DashboardClient {
    pub fn new(config: DashboardClientConfig, app: Application) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            config,
            app,
            http,
            registered: false,
            failing: false,
            busy: false,
        }
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.config.url.expose().trim_end_matches('/'))
    }

    fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        self.http
            .post(self.endpoint(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
    }

    fn body(&self) -> Value {
        json!({
            "app_id": self.app.app_id,
            "name": self.app.name,
            "router_type": self.app.router_type,
            "version": self.app.version,
            "metadata": self.app.metadata,
        })
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let path = if self.registered {
            "/api/applications/heartbeat"
        } else {
            "/api/applications/register"
        };
        let request = self.post(path, &self.body());
        let work = async move { request.await.map(|response| response.status().as_u16()) };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            match result {
                Ok(status) if (200..300).contains(&status) => {
                    if !act.registered || act.failing {
                        tracing::info!(dashboard = %act.config.url, app_id = %act.app.app_id, "registered with the sollol dashboard");
                    }
                    act.registered = true;
                    act.failing = false;
                }
                Ok(404) if act.registered => {
                    act.registered = false;
                    act.beat(ctx);
                }
                outcome => {
                    let error = match outcome {
                        Ok(status) => format!("HTTP {status}"),
                        Err(err) => crate::node::describe_reqwest_error(&err),
                    };
                    if !act.failing {
                        tracing::warn!(dashboard = %act.config.url, error = %error, "cannot register with the sollol dashboard; retrying");
                    }
                    act.failing = true;
                }
            }
        }));
    }
}

impl Actor for DashboardClient {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.beat(ctx);
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| act.beat(ctx));
    }
}

impl Handler<Unregister> for DashboardClient {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Unregister, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        let by_path = self.post(
            &format!("/api/applications/{}/unregister", self.app.app_id),
            &json!({}),
        );
        let by_body = self.post(
            "/api/applications/unregister",
            &json!({ "app_id": self.app.app_id }),
        );
        Box::pin(async move {
            let (_, _) = futures_util::join!(by_path, by_body);
        })
    }
}
