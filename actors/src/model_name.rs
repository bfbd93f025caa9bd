//! Model names as Ollama compares them: case-insensitive, with the tag defaulting to
//! `latest` (`Llama3.2` and `llama3.2:latest` are the same model).

/// The form used to compare model names across nodes and requests.
pub fn normalize_model(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    // The default registry and namespace may be spelled out or left off.
    let lower = lower
        .strip_prefix("registry.ollama.ai/")
        .unwrap_or(&lower)
        .to_string();
    let lower = lower.strip_prefix("library/").unwrap_or(&lower).to_string();
    let last_segment = lower.rsplit('/').next().unwrap_or(&lower);
    if last_segment.contains(':') {
        lower
    } else {
        format!("{lower}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_model;

    #[test]
    fn adds_latest_and_lowercases() {
        assert_eq!(normalize_model("Llama3.2"), "llama3.2:latest");
        assert_eq!(normalize_model("llama3.2:1b"), "llama3.2:1b");
        assert_eq!(
            normalize_model("host:5000/ns/model"),
            "host:5000/ns/model:latest"
        );
        assert_eq!(normalize_model("ns/model:q4"), "ns/model:q4");
        assert_eq!(normalize_model("library/llama3.2"), "llama3.2:latest");
        assert_eq!(
            normalize_model("registry.ollama.ai/library/llama3.2:latest"),
            "llama3.2:latest"
        );
    }
}
