//! A simulated Ollama server.
