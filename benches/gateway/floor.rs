//! The frameworks alone: an actix-web server that forwards every request with reqwest and
//! nothing else (no routing, no events, no relay by lines). What it costs per request is
//! the floor under any gateway built on the same two crates, sollol included.
//!
//! It runs as a child process (this binary with `--floor-proxy BACKEND`), with actix-web's
//! default worker count, as sollol does.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// Serves on `127.0.0.1:0`, prints the address, and stops by itself after an hour.
pub fn run(backend: SocketAddr) {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3600));
        std::process::exit(0);
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    println!(
        "floor listening on http://{}",
        listener.local_addr().expect("address")
    );
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let client = client.clone();
            App::new().default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
                forward(client.clone(), backend, request, body)
            }))
        })
        .listen(listener)
        .expect("listen")
        .run()
        .await
        .expect("serve");
    });
}

async fn forward(
    client: reqwest::Client,
    backend: SocketAddr,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let url = format!("http://{backend}{}", request.path());
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let Ok(response) = sent else {
        return HttpResponse::BadGateway().finish();
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    match response.bytes().await {
        Ok(answer) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
                .content_type(content_type)
                .body(answer)
        }
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}
