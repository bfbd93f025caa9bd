//! What one simulated node has and how slowly it answers.

use std::time::Duration;

/// The knobs of one simulated Ollama node.
///
/// Everything a reply says is derived from the request and these values, so two nodes with the
/// same configuration answer the same request with the same text. Only timestamps differ.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Model names the node has, as a user would type them (`llama3.2`, `nomic-embed-text`,
    /// `qwen2.5:7b`). A missing tag means `latest`; matching ignores case.
    pub models: Vec<String>,
    /// Models resident in memory at start, listed by `/api/ps`. A name missing from `models` is
    /// added to it.
    pub loaded: Vec<String>,
    /// Delay before the first byte of any inference reply (headers included).
    pub latency: Duration,
    /// Delay between two streamed chunks.
    pub token_delay: Duration,
    /// Extra delay when a request uses a model that is not resident. The model is resident
    /// afterwards, and concurrent requests for it wait for the same load.
    pub load_delay: Duration,
    /// When set, every streamed reply closes the connection after this many chunks, without an
    /// error line, a `done` line or the chunked-encoding terminator: a node dying mid-stream.
    pub drop_after_chunks: Option<usize>,
    /// Reported by `/api/version`.
    pub version: String,
    /// Length of every embedding vector.
    pub embedding_dim: usize,
    /// When set, every inference request (native and `/v1`) fails at once with this status
    /// and an `{"error":...}` body: a node that answers fast with errors. Changed at run time
    /// with `POST /sim/control`.
    pub fail_status: Option<u16>,
    /// Generations the node runs at once (Ollama's `OLLAMA_NUM_PARALLEL`); more wait their
    /// turn. `None` runs every request at once.
    pub parallel: Option<usize>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            models: vec!["llama3.2".to_owned()],
            loaded: Vec::new(),
            latency: Duration::ZERO,
            token_delay: Duration::ZERO,
            load_delay: Duration::ZERO,
            drop_after_chunks: None,
            version: "0.12.6".to_owned(),
            embedding_dim: 8,
            fail_status: None,
            parallel: None,
        }
    }
}
