//! Model names and the plausible details derived from them.
//!
//! A name is `[host/][namespace/]model[:tag]`; the tag defaults to `latest`, the default
//! registry prefix `registry.ollama.ai/library/` is optional and matching ignores case. All
//! details (family, size, digest, modification time) are functions of the name, so every node
//! describes a model the same way.

use serde::Serialize;

use crate::clock;
use crate::text;

/// One model a node has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelEntry {
    /// The name shown in listings, with its tag: `llama3.2:latest`.
    pub(crate) name: String,
    /// The lowercase form used for matching.
    pub(crate) key: String,
    /// The key whose details this model has: itself, or the source of a copy.
    pub(crate) origin: String,
}

impl ModelEntry {
    /// An entry for `name`, or `None` when the name is empty.
    pub(crate) fn new(name: &str) -> Option<Self> {
        let name = with_tag(name)?;
        let key = name.to_lowercase();
        Some(Self {
            name,
            origin: key.clone(),
            key,
        })
    }

    /// The details of this model, with vectors of `embedding_dim` values.
    pub(crate) fn profile(&self, embedding_dim: usize) -> Profile {
        Profile::of(&self.origin, embedding_dim)
    }

    /// The namespace, which OpenAI's `owned_by` reports (`library` by default).
    pub(crate) fn namespace(&self) -> &str {
        let (path, _) = split_tag(&self.name);
        let mut parts = path.rsplit('/');
        parts.next();
        parts.next().unwrap_or("library")
    }
}

/// The matching key of a name as a request gives it, or `None` for an empty name.
pub(crate) fn key_of(name: &str) -> Option<String> {
    with_tag(name).map(|name| name.to_lowercase())
}

/// The name as a server reports it: registry prefix dropped, `:latest` added when untagged.
pub(crate) fn with_tag(name: &str) -> Option<String> {
    let name = name.trim();
    let short = strip_prefix_ignore_case(name, "registry.ollama.ai/").unwrap_or(name);
    let short = strip_prefix_ignore_case(short, "library/").unwrap_or(short);
    if short.is_empty() {
        return None;
    }
    let last_segment = short.rsplit('/').next().unwrap_or(short);
    if last_segment.contains(':') {
        Some(short.to_owned())
    } else {
        Some(format!("{short}:latest"))
    }
}

/// Splits `host:port/name:tag` into path and tag; the tag is `latest` when absent.
fn split_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, tag),
        _ => (name, "latest"),
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// What a model family looks like on disk.
struct Family {
    /// Base-name prefix that selects this family.
    prefix: &'static str,
    family: &'static str,
    embedding: bool,
    parameter_count: u64,
    quantization: &'static str,
    context_length: u64,
    block_count: u64,
}

const FAMILIES: &[Family] = &[
    Family::embedder("nomic-embed", "nomic-bert", 137_000_000, 2048),
    Family::embedder("all-minilm", "bert", 23_000_000, 512),
    Family::embedder("mxbai-embed", "bert", 334_000_000, 512),
    Family::embedder("snowflake-arctic-embed", "bert", 334_000_000, 512),
    Family::embedder("bge", "bert", 567_000_000, 8192),
    Family::chat("llama", "llama", 3_212_749_888, "Q4_K_M", 131_072),
    Family::chat("mistral", "llama", 7_248_023_552, "Q4_0", 32_768),
    Family::chat("qwen", "qwen2", 7_615_616_512, "Q4_K_M", 32_768),
    Family::chat("gemma", "gemma3", 4_300_079_472, "Q4_K_M", 131_072),
    Family::chat("phi", "phi3", 3_821_079_552, "Q4_0", 131_072),
];

/// Models whose name matches no family.
const FALLBACK: Family = Family::chat("", "llama", 8_030_261_248, "Q4_K_M", 8192);

impl Family {
    const fn embedder(
        prefix: &'static str,
        family: &'static str,
        parameter_count: u64,
        context_length: u64,
    ) -> Self {
        Self {
            prefix,
            family,
            embedding: true,
            parameter_count,
            quantization: "F16",
            context_length,
            block_count: 12,
        }
    }

    const fn chat(
        prefix: &'static str,
        family: &'static str,
        parameter_count: u64,
        quantization: &'static str,
        context_length: u64,
    ) -> Self {
        Self {
            prefix,
            family,
            embedding: false,
            parameter_count,
            quantization,
            context_length,
            block_count: 28,
        }
    }

    fn of(base_name: &str) -> &'static Family {
        FAMILIES
            .iter()
            .find(|family| base_name.starts_with(family.prefix))
            .unwrap_or(&FALLBACK)
    }
}

/// Everything `/api/tags`, `/api/ps` and `/api/show` say about a model.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) details: Details,
    pub(crate) embedding_only: bool,
    pub(crate) parameter_count: u64,
    pub(crate) file_type: u32,
    pub(crate) size: u64,
    pub(crate) digest: String,
    pub(crate) modified_nanos: i128,
    pub(crate) context_length: u64,
    pub(crate) embedding_length: usize,
    pub(crate) block_count: u64,
    pub(crate) base_name: String,
}

/// The `details` object, in wire order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Details {
    pub(crate) parent_model: &'static str,
    pub(crate) format: &'static str,
    pub(crate) family: &'static str,
    pub(crate) families: [&'static str; 1],
    pub(crate) parameter_size: String,
    pub(crate) quantization_level: &'static str,
}

/// 2025-01-01T00:00:00Z; modification times fall in the year after it.
const EPOCH_2025: i128 = 1_735_689_600;

impl Profile {
    fn of(key: &str, embedding_dim: usize) -> Self {
        let seed = text::hash(&[key]);
        let (path, tag) = split_tag(key);
        let base_name = path.rsplit('/').next().unwrap_or(path).to_owned();
        let family = Family::of(&base_name);

        let parameter_count = tag_parameters(tag).unwrap_or(family.parameter_count);
        let bytes_per_parameter = if family.embedding { 2.0 } else { 0.6 };
        let size = (parameter_count as f64 * bytes_per_parameter) as u64 + seed % 1_000_000;

        let offset_seconds = i128::from(seed % (360 * 86_400));
        let offset_nanos = i128::from(seed >> 34) % 1_000_000_000;
        let modified_nanos = (EPOCH_2025 + offset_seconds) * 1_000_000_000 + offset_nanos;

        Self {
            details: Details {
                parent_model: "",
                format: "gguf",
                family: family.family,
                families: [family.family],
                parameter_size: parameter_size(parameter_count),
                quantization_level: family.quantization,
            },
            embedding_only: family.embedding,
            parameter_count,
            file_type: if family.embedding { 1 } else { 15 },
            size,
            digest: text::hex_digest(seed),
            modified_nanos,
            context_length: family.context_length,
            embedding_length: embedding_dim,
            block_count: family.block_count,
            base_name,
        }
    }

    /// `modified_at` in the node's pretend local zone.
    pub(crate) fn modified_at(&self) -> String {
        clock::rfc3339(self.modified_nanos, clock::LOCAL_OFFSET_SECONDS)
    }

    /// `modified_at` in whole seconds, as `/v1/models` reports `created`.
    pub(crate) fn modified_seconds(&self) -> i64 {
        (self.modified_nanos / 1_000_000_000) as i64
    }

    /// What the model can do, as `/api/show` lists it.
    pub(crate) fn capabilities(&self) -> &'static [&'static str] {
        if self.embedding_only {
            &["embedding"]
        } else {
            &["completion", "tools"]
        }
    }

    /// The architecture key prefix used in `model_info`.
    pub(crate) fn architecture(&self) -> &'static str {
        self.details.family
    }
}

/// A size tag such as `7b`, `0.5b`, `70b-instruct` or `137m`, in parameters.
fn tag_parameters(tag: &str) -> Option<u64> {
    let number_len = tag.find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))?;
    let value: f64 = tag[..number_len].parse().ok()?;
    let scale = match tag[number_len..].chars().next()? {
        'b' | 'B' => 1e9,
        'm' | 'M' => 1e6,
        _ => return None,
    };
    Some((value * scale) as u64)
}

/// `3.2B`, `137M`: one decimal, as the server prints it.
fn parameter_size(count: u64) -> String {
    if count >= 1_000_000_000 {
        format!("{:.1}B", count as f64 / 1e9)
    } else {
        format!("{}M", count / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_gain_a_tag_and_lose_the_default_registry() {
        assert_eq!(with_tag("llama3.2").as_deref(), Some("llama3.2:latest"));
        assert_eq!(with_tag("qwen2.5:7b").as_deref(), Some("qwen2.5:7b"));
        assert_eq!(
            with_tag("registry.ollama.ai/library/llama3.2").as_deref(),
            Some("llama3.2:latest")
        );
        assert_eq!(
            with_tag("localhost:5000/me/model").as_deref(),
            Some("localhost:5000/me/model:latest")
        );
        assert_eq!(with_tag("  "), None);
        assert_eq!(key_of("Llama3.2"), key_of("llama3.2:LATEST"));
    }

    #[test]
    fn details_follow_the_name() {
        let llama = ModelEntry::new("llama3.2").expect("name").profile(8);
        assert_eq!(llama.details.family, "llama");
        assert_eq!(llama.details.parameter_size, "3.2B");
        assert!(!llama.embedding_only);

        let embedder = ModelEntry::new("nomic-embed-text")
            .expect("name")
            .profile(8);
        assert!(embedder.embedding_only);
        assert_eq!(embedder.details.family, "nomic-bert");

        let sized = ModelEntry::new("qwen2.5:0.5b").expect("name").profile(8);
        assert_eq!(sized.details.parameter_size, "500M");
        assert_ne!(llama.digest, sized.digest);
        assert_ne!(llama.modified_nanos, sized.modified_nanos);
    }

    #[test]
    fn namespace_defaults_to_library() {
        let entry = ModelEntry::new("llama3.2").expect("name");
        assert_eq!(entry.namespace(), "library");
        let entry = ModelEntry::new("someone/model:1b").expect("name");
        assert_eq!(entry.namespace(), "someone");
        let entry = ModelEntry::new("localhost:5000/me/model").expect("name");
        assert_eq!(entry.namespace(), "me");
    }
}
