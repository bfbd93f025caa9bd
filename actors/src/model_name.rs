//! Model names as Ollama compares them: case-insensitive, with the tag defaulting to
//! `latest` (`Llama3.2` and `llama3.2:latest` are the same model).

/// The form used to compare model names across nodes and requests.
pub fn normalize_model(name: &str) -> String {
    // The default registry and namespace may be spelled out or left off.
    let name = strip_prefix_ignoring_case(name.trim(), "registry.ollama.ai/");
    let name = strip_prefix_ignoring_case(name, "library/");
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let tagged = last_segment.contains(':');
    let mut normalized = String::with_capacity(name.len() + if tagged { 0 } else { 7 });
    normalized.push_str(name);
    normalized.make_ascii_lowercase();
    if !tagged {
        normalized.push_str(":latest");
    }
    normalized
}

fn strip_prefix_ignoring_case<'a>(name: &'a str, prefix: &str) -> &'a str {
    match name.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &name[prefix.len()..],
        _ => name,
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
