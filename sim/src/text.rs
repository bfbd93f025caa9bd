//! Deterministic "model output": hashes, words, token ids and embedding vectors.
//!
//! Everything here is a pure function of its inputs, so every node and every run produce the
//! same text for the same model and prompt. The vocabulary holds no `<`, `>` or `&`, which keeps
//! generated text identical under Go's HTML-escaping JSON encoder.

/// Words the simulated models speak.
const VOCABULARY: [&str; 64] = [
    "the", "sky", "river", "light", "quiet", "signal", "model", "answer", "blue", "green", "stone",
    "cloud", "morning", "simple", "small", "bright", "field", "road", "window", "north", "south",
    "wind", "rain", "paper", "garden", "silver", "clock", "bridge", "forest", "ocean", "harbor",
    "winter", "summer", "number", "letter", "story", "pattern", "circle", "line", "shadow",
    "mountain", "valley", "engine", "lantern", "orchard", "meadow", "thread", "button", "candle",
    "market", "island", "tower", "voice", "echo", "spark", "season", "copper", "amber", "maple",
    "willow", "falcon", "comet", "harvest", "beacon",
];

/// Hashes a list of strings with FNV-1a, separating the parts so `("ab", "c")` and
/// `("a", "bc")` differ.
pub(crate) fn hash(parts: &[&str]) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            state ^= u64::from(byte);
            state = state.wrapping_mul(0x0100_0000_01b3);
        }
    }
    state
}

/// A splitmix64 sequence: small, fast and well mixed, which is all a simulation needs.
pub(crate) struct Sequence(u64);

impl Sequence {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `[-1, 1)`.
    fn next_signed(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// A value in `0..bound`.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

/// How many tokens a model says on its own for this seed: 5 to 8.
pub(crate) fn natural_length(seed: u64) -> usize {
    5 + (seed % 4) as usize
}

/// The `count` tokens a model answers with. The first word is capitalised, later ones carry a
/// leading space, and the last ends the sentence.
pub(crate) fn tokens(seed: u64, count: usize) -> Vec<String> {
    let mut sequence = Sequence::new(seed);
    let mut tokens = Vec::with_capacity(count);
    for index in 0..count {
        let word = VOCABULARY[sequence.below(VOCABULARY.len())];
        let mut token = if index == 0 {
            capitalise(word)
        } else {
            format!(" {word}")
        };
        if index + 1 == count {
            token.push('.');
        }
        tokens.push(token);
    }
    tokens
}

/// A single capitalised word, used for tool-call argument values.
pub(crate) fn word(seed: u64) -> String {
    let mut sequence = Sequence::new(seed);
    capitalise(VOCABULARY[sequence.below(VOCABULARY.len())])
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A rough token count: words, never zero for non-empty text.
pub(crate) fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Token ids for a piece of text, one per word, as a `context` array carries them.
pub(crate) fn token_ids(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.split_whitespace()
        .map(|word| (hash(&[word]) % 128_000) as u32)
}

/// The raw (not normalised) embedding of `text` under `model_key`, as `/api/embeddings`
/// returns it.
pub(crate) fn raw_vector(model_key: &str, text: &str, dim: usize) -> Vec<f64> {
    let mut sequence = Sequence::new(hash(&[model_key, text]));
    (0..dim).map(|_| sequence.next_signed() * 2.0).collect()
}

/// `values` scaled to unit L2 length, in `f32` as `/api/embed` returns it. A zero vector stays
/// zero.
pub(crate) fn normalise(values: &[f64]) -> Vec<f32> {
    let norm = values.iter().map(|value| value * value).sum::<f64>().sqrt();
    if norm == 0.0 {
        return values.iter().map(|_| 0.0).collect();
    }
    values.iter().map(|value| (value / norm) as f32).collect()
}

/// A short lowercase alphanumeric id, e.g. for `call_xxxxxxxx`.
pub(crate) fn short_id(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut sequence = Sequence::new(seed);
    (0..len)
        .map(|_| char::from(ALPHABET[sequence.below(ALPHABET.len())]))
        .collect()
}

/// 64 lowercase hex digits derived from `seed`, shaped like a sha256 digest.
pub(crate) fn hex_digest(seed: u64) -> String {
    let mut sequence = Sequence::new(seed);
    (0..4)
        .map(|_| format!("{:016x}", sequence.next_u64()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_deterministic_and_form_a_sentence() {
        let first = tokens(42, 6);
        assert_eq!(first, tokens(42, 6));
        assert_eq!(first.len(), 6);
        assert!(first[0].chars().next().is_some_and(char::is_uppercase));
        assert!(first[1].starts_with(' '));
        assert!(first[5].ends_with('.'));
        assert_ne!(first, tokens(43, 6));
    }

    #[test]
    fn vocabulary_needs_no_html_escaping() {
        assert!(VOCABULARY
            .iter()
            .all(|word| !word.contains(['<', '>', '&'])));
    }

    #[test]
    fn normalised_vectors_have_unit_length() {
        let raw = raw_vector("all-minilm:latest", "why is the sky blue?", 16);
        let unit = normalise(&raw);
        let length: f32 = unit.iter().map(|value| value * value).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-5, "length was {length}");
        assert_eq!(normalise(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn digests_are_64_hex_digits() {
        let digest = hex_digest(hash(&["llama3.2:latest"]));
        assert_eq!(digest.len(), 64);
        assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
