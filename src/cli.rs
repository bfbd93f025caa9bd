//! The command line: `serve`, `demo`, `events`, `sim-node` and the internal `worker`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(
    name = "sollol",
    version,
    about = "One fast, observable, fault-tolerant Ollama endpoint over many Ollama servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway in front of your Ollama servers.
    Serve(ServeArgs),
    /// Run a gateway over three simulated nodes on loopback, for a first try.
    Demo(DemoArgs),
    /// Follow the event feed in Redis (what `redis-cli PSUBSCRIBE "sollol:dashboard:*"` showed).
    Events(EventsArgs),
    /// Run a simulated Ollama server (for tests, demos and benchmarks).
    SimNode(SimNodeArgs),
    /// Embed a file of texts through a running gateway (resumable).
    Embed(crate::embed_cmd::EmbedArgs),
    /// Internal: the worker-process entry point, started by the gateway's supervisor.
    #[command(hide = true)]
    Worker,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: SOLLOL_BIND] [default: 127.0.0.1:8000]
    #[arg(long)]
    pub bind: Option<String>,
    /// An Ollama server (repeatable): host, host:port or http://host:port
    /// [env: SOLLOL_NODES, comma-separated] [default: OLLAMA_HOST or http://127.0.0.1:11434]
    #[arg(long = "node", value_name = "URL")]
    pub nodes: Vec<String>,
    /// Worker processes for batch work [env: SOLLOL_WORKERS] [default: 2]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Routing strategy: intelligent, round_robin, least_loaded, latency_first or fairness [env: SOLLOL_STRATEGY]
    #[arg(long)]
    pub strategy: Option<String>,
    /// Redis for the event feed, e.g. redis://127.0.0.1:6379/0 [env: SOLLOL_REDIS_URL]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Application name in every published event [env: SOLLOL_APP_NAME] [default: sollol]
    #[arg(long)]
    pub app_name: Option<String>,
    /// TOML file with settings (flags and SOLLOL_* variables override it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            bind: self.bind.clone(),
            nodes: self.nodes.clone(),
            workers: self.workers,
            strategy: self.strategy.clone(),
            redis_url: self.redis_url.clone(),
            app_name: self.app_name.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address for the demo gateway
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub bind: String,
    /// Worker processes
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Redis for the event feed [env: SOLLOL_REDIS_URL]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Redis to read [env: SOLLOL_REDIS_URL] [default: redis://127.0.0.1:6379/0]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Channel pattern to subscribe to (repeatable) [default: sollol:dashboard:*]
    #[arg(long = "pattern", value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Only events whose node contains this text
    #[arg(long)]
    pub node: Option<String>,
    /// Only events whose model contains this text
    #[arg(long)]
    pub model: Option<String>,
    /// Only events of this type (ollama_response, worker_ready, ...)
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only events of applications whose name contains this text
    #[arg(long)]
    pub app: Option<String>,
    /// Least severity shown: info, warning, error or critical
    #[arg(long)]
    pub severity: Option<String>,
    /// Print the published JSON, one event per line, instead of readable lines
    #[arg(long)]
    pub json: bool,
    /// First print the last N entries of the activity stream
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub history: usize,
    /// Stop after this many events
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SimNodeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed)
    #[arg(long, default_value = "127.0.0.1:11434")]
    pub bind: String,
    /// Models the node has, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "llama3.2")]
    pub models: Vec<String>,
    /// Models resident at start, comma-separated
    #[arg(long, value_delimiter = ',')]
    pub loaded: Vec<String>,
    /// Delay before the first byte of every inference reply, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Delay between streamed chunks, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub token_ms: u64,
    /// Extra delay when a model that is not resident is used, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub load_ms: u64,
    /// Cut the connection after this many streamed chunks (simulates a node dying)
    #[arg(long)]
    pub drop_after: Option<usize>,
    /// Fail every inference request with this HTTP status (change it at run time with
    /// `POST /sim/control {"fail_status": 500}` or `null`)
    #[arg(long)]
    pub fail_status: Option<u16>,
    /// Generations run at once (like OLLAMA_NUM_PARALLEL); more wait their turn
    #[arg(long)]
    pub parallel: Option<usize>,
}
