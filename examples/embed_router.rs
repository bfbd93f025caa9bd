//! An actix-web application that embeds sollol's router.
//!
//! It starts the observer, one node actor per Ollama server and the router from
//! [`Settings`], then serves its own `/ask?q=...` route, which asks the router for a node
//! and calls `/api/generate` there. With no `OLLAMA_HOST`, it starts a simulated Ollama
//! node on loopback so it runs anywhere.
//!
//! Run: `cargo run --example embed_router`, then `curl '127.0.0.1:8080/ask?q=hello'`.

use std::net::TcpListener;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;
use sollol::actors::router::PickNode;
use sollol::actors::EnvSnapshot;
use sollol::cluster::{Cluster, Telemetry};
use sollol::config::{Overrides, Settings};

#[derive(Deserialize)]
struct Ask {
    q: String,
}

async fn ask(query: web::Query<Ask>, cluster: web::Data<Cluster>) -> HttpResponse {
    // The lease holds a slot on the node until it is dropped at the end of this handler.
    let lease = match cluster.router.pick(PickNode::for_model("llama3.2")).await {
        Ok(lease) => lease,
        Err(err) => {
            return HttpResponse::BadGateway().json(serde_json::json!({ "error": err.to_string() }))
        }
    };
    let node = &lease.node;
    let body = serde_json::json!({ "model": "llama3.2", "prompt": query.q, "stream": false });
    let answer = node
        .client()
        .post(node.endpoint("/api/generate"))
        .header("host", node.host_header())
        .body(body.to_string())
        .send()
        .await;
    match answer {
        Ok(response) => {
            let text = response.text().await.unwrap_or_default();
            HttpResponse::Ok()
                .insert_header(("x-node", node.key().to_string()))
                .body(text)
        }
        Err(err) => {
            HttpResponse::BadGateway().json(serde_json::json!({ "error": err.to_string() }))
        }
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let env = EnvSnapshot::capture();
    let mut overrides = Overrides {
        workers: Some(0),
        ..Overrides::default()
    };
    if env.get("OLLAMA_HOST").is_none() {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        overrides.nodes = vec![format!("http://{}", listener.local_addr()?)];
        actix_rt::spawn(sollol_sim::start(
            sollol_sim::SimConfig::default(),
            listener,
        )?);
    }
    let settings = Settings::load(&env, &overrides).map_err(std::io::Error::other)?;
    let mut telemetry = Telemetry::start(&settings, &env).map_err(std::io::Error::other)?;
    let cluster = Cluster::start(&settings, &telemetry.observer).map_err(std::io::Error::other)?;
    // Registers this program as an application (and publishes metadata when Redis is set).
    telemetry.announce(&settings, &cluster);
    let healthy = cluster.check_all().await;
    println!(
        "{healthy} of {} nodes healthy; try: curl '127.0.0.1:8080/ask?q=hello'",
        cluster.nodes.len()
    );

    let cluster = web::Data::new(cluster);
    HttpServer::new(move || {
        App::new()
            .app_data(cluster.clone())
            .route("/ask", web::get().to(ask))
    })
    .bind("127.0.0.1:8080")?
    .run()
    .await
}
