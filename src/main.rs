//! The `sollol` binary: parses the command line and hands over to the library.

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sollol::cli::{Cli, Command, ServeArgs, SimNodeArgs};
use sollol::config::Settings;
use sollol::gateway::{self, WorkerProgram};
use sollol::{demo, events_cmd, logging, worker_main};
use sollol_actors::EnvSnapshot;

/// mimalloc, without transparent huge pages (they would triple the idle resident set):
/// events are built on the HTTP worker threads and freed on the observer's, which the
/// system allocator handles with locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker => return ExitCode::from(worker_main::run().clamp(0, 255) as u8),
        Command::Serve(args) => serve(args),
        Command::Demo(args) => {
            logging::init("text");
            actix::System::new().block_on(demo::run(args))
        }
        Command::Events(args) => {
            events_cmd::run(args, std::env::var("SOLLOL_REDIS_URL").ok()).map_err(|e| e.to_string())
        }
        Command::SimNode(args) => sim_node(args),
        Command::Embed(args) => actix::System::new()
            .block_on(sollol::embed_cmd::run(args))
            .map_err(|err| err.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sollol: {message}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let env = EnvSnapshot::capture();
    let settings = Settings::load(&env, &args.overrides()).map_err(|err| err.to_string())?;
    logging::init(&settings.log_format);
    actix::System::new().block_on(async move {
        let program = WorkerProgram::current_exe().map_err(|err| err.to_string())?;
        let running = gateway::start(settings, env, program)
            .await
            .map_err(|err| err.to_string())?;
        println!("sollol listening on http://{}", running.local_addr);
        running.run().await.map_err(|err| err.to_string())
    })
}

fn sim_node(args: SimNodeArgs) -> Result<(), String> {
    logging::init("text");
    let listener = TcpListener::bind(&args.bind)
        .map_err(|err| format!("cannot listen on {}: {err}", args.bind))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let config = sollol_sim::SimConfig {
        models: args.models,
        loaded: args.loaded,
        latency: Duration::from_millis(args.latency_ms),
        token_delay: Duration::from_millis(args.token_ms),
        load_delay: Duration::from_millis(args.load_ms),
        drop_after_chunks: args.drop_after,
        fail_status: args.fail_status,
        parallel: args.parallel,
        ..sollol_sim::SimConfig::default()
    };
    actix::System::new().block_on(async move {
        let server = sollol_sim::start(config, listener).map_err(|err| err.to_string())?;
        println!("sollol sim-node listening on http://{address}");
        server.await.map_err(|err| err.to_string())
    })
}
