//! Registration with a SOLLOL dashboard over HTTP, against a stand-in dashboard on a
//! loopback port: register, heartbeats with the same body, a new registration when the
//! dashboard forgot the application, and both unregister routes on shutdown.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::*;
use serde_json::Value;

type Calls = Arc<Mutex<Vec<(String, Value)>>>;

async fn record(request: HttpRequest, body: web::Bytes, calls: web::Data<Calls>) -> HttpResponse {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = request.path().to_string();
    let mut calls = calls.lock().expect("calls");
    let heartbeats = calls
        .iter()
        .filter(|(p, _)| p.ends_with("/heartbeat"))
        .count();
    calls.push((path.clone(), body));
    // The second heartbeat is answered as a restarted dashboard would: unknown app.
    if path.ends_with("/heartbeat") && heartbeats == 1 {
        return HttpResponse::NotFound()
            .json(serde_json::json!({"error": "app_id not registered"}));
    }
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[actix_rt::test]
async fn registers_heartbeats_re_registers_and_unregisters() {
    let calls: Calls = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dashboard = format!("http://{}", listener.local_addr().expect("address"));
    let data = web::Data::new(calls.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(record))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    let server_handle = server.handle();
    actix_rt::spawn(server);

    let node = sim_node("llama3.2", &[]);
    let mut gw = gateway(
        &[&node],
        &["--workers", "0", "--app-name", "registered-app"],
        &[
            ("SOLLOL_DASHBOARD_URL", &dashboard),
            ("SOLLOL_METADATA_INTERVAL_MS", "200"),
        ],
    );
    let paths = |calls: &Calls| -> Vec<String> {
        calls
            .lock()
            .expect("calls")
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    };
    eventually(
        Duration::from_secs(15),
        "register, heartbeat, 404, register again",
        || {
            let seen = paths(&calls);
            let registers = seen.iter().filter(|p| p.ends_with("/register")).count();
            let heartbeats = seen.iter().filter(|p| p.ends_with("/heartbeat")).count();
            async move { (registers >= 2 && heartbeats >= 3).then_some(()) }
        },
    )
    .await;
    let recorded = calls.lock().expect("calls").clone();
    let (first_path, first) = &recorded[0];
    assert_eq!(first_path, "/api/applications/register");
    let app_id = first["app_id"].as_str().expect("app_id").to_string();
    assert_eq!(first["name"], "registered-app");
    assert_eq!(first["router_type"], "sollol");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(first["metadata"]["nodes"], 1);
    assert!(recorded
        .iter()
        .all(|(_, body)| body.get("app_id").is_none_or(|id| id == app_id.as_str())));

    // A graceful stop tells the dashboard on both routes SOLLOL's dashboards use.
    stop_gracefully(&mut gw).await;
    let seen = paths(&calls);
    assert!(
        seen.contains(&format!("/api/applications/{app_id}/unregister")),
        "{seen:?}"
    );
    let by_body = calls
        .lock()
        .expect("calls")
        .iter()
        .find(|(p, _)| p == "/api/applications/unregister")
        .map(|(_, body)| body.clone())
        .expect("unregister with a body");
    assert_eq!(by_body["app_id"], app_id.as_str());
    server_handle.stop(false).await;
}
