//! `sollol embed`: embeds a file of texts through a running gateway, with a progress bar,
//! and picks up where it stopped when run again.
//!
//! The input has one text per line, or one JSON value per line (a string, or an object
//! with a `text` field). The output has one JSON line per input, in order:
//! `{"index": i, "embedding": [...]}`. On start, complete lines already in the output are
//! kept and their inputs skipped; a half-written last line is cut off.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Embedding model, e.g. nomic-embed-text
    #[arg(long)]
    pub model: String,
    /// Texts: one per line, or JSON lines (strings or objects with a `text` field)
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// JSON lines written here; an existing file is resumed
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// The sollol gateway to use
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub gateway: String,
    /// Inputs sent per request to the gateway
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedCommandError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line} of {path}: {message}")]
    BadInput {
        path: String,
        line: usize,
        message: String,
    },
    #[error("the gateway at {gateway} failed at input {index}: {message} (run the same command again to resume)")]
    Gateway {
        gateway: String,
        index: usize,
        message: String,
    },
}

/// Reads the texts of the input file.
fn read_texts(path: &Path) -> Result<Vec<String>, EmbedCommandError> {
    let file = File::open(path).map_err(|source| EmbedCommandError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut texts = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| EmbedCommandError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let text = match serde_json::from_str::<Value>(&line) {
            Ok(Value::String(text)) => text,
            Ok(Value::Object(object)) => match object.get("text") {
                Some(Value::String(text)) => text.clone(),
                _ => {
                    return Err(EmbedCommandError::BadInput {
                        path: path.display().to_string(),
                        line: number + 1,
                        message: "a JSON object needs a string `text` field".into(),
                    })
                }
            },
            _ => line,
        };
        texts.push(text);
    }
    Ok(texts)
}

/// Counts the complete lines already in the output and cuts off a half-written last one.
fn resume_point(path: &Path) -> Result<usize, EmbedCommandError> {
    let write_error = |source| EmbedCommandError::Write {
        path: path.display().to_string(),
        source,
    };
    let Ok(mut file) = OpenOptions::new().read(true).write(true).open(path) else {
        return Ok(0);
    };
    let mut done = 0;
    let mut good_bytes = 0u64;
    let mut reader = BufReader::new(&mut file);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(write_error)?;
        if read == 0 || !line.ends_with('\n') || serde_json::from_str::<Value>(&line).is_err() {
            break;
        }
        done += 1;
        good_bytes += read as u64;
    }
    drop(reader);
    file.set_len(good_bytes).map_err(write_error)?;
    Ok(done)
}

fn progress(done: usize, total: usize, started: Instant, resumed_at: usize) {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    let rate = (done - resumed_at) as f64 / started.elapsed().as_secs_f64().max(0.001);
    let text = format!(
        "[{}{}] {done}/{total} ({:.0}%) {rate:.0} inputs/s",
        "#".repeat(filled),
        ".".repeat(width - filled),
        if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        }
    );
    if std::io::stderr().is_terminal() {
        eprint!("\r{text}");
    } else {
        eprintln!("{text}");
    }
}

pub async fn run(args: EmbedArgs) -> Result<(), EmbedCommandError> {
    let texts = read_texts(&args.input)?;
    let output_name = args.output.display().to_string();
    let resumed_at = resume_point(&args.output)?.min(texts.len());
    if resumed_at > 0 {
        eprintln!(
            "resuming: {resumed_at} of {} inputs are already in {output_name}",
            texts.len()
        );
    }
    let mut output = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.output)
        .map_err(|source| EmbedCommandError::Write {
            path: output_name.clone(),
            source,
        })?;
    output
        .seek(SeekFrom::End(0))
        .map_err(|source| EmbedCommandError::Write {
            path: output_name.clone(),
            source,
        })?;

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|err| EmbedCommandError::Gateway {
            gateway: args.gateway.clone(),
            index: resumed_at,
            message: err.to_string(),
        })?;
    let url = format!("{}/sollol/batch/embed", args.gateway.trim_end_matches('/'));
    let started = Instant::now();
    let mut done = resumed_at;
    progress(done, texts.len(), started, resumed_at);
    for batch in texts[resumed_at..].chunks(args.batch_size.max(1)) {
        let failed = |message: String| EmbedCommandError::Gateway {
            gateway: args.gateway.clone(),
            index: done,
            message,
        };
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(json!({ "model": args.model, "input": batch }).to_string())
            .send()
            .await
            .map_err(|err| failed(err.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| failed(err.to_string()))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|err| failed(format!("invalid answer: {err}")))?;
        if !status.is_success() {
            return Err(failed(
                body["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
            ));
        }
        let vectors = body["embeddings"]
            .as_array()
            .filter(|v| v.len() == batch.len())
            .ok_or_else(|| failed(format!("expected {} embeddings in the answer", batch.len())))?;
        let mut lines = String::new();
        for (offset, embedding) in vectors.iter().enumerate() {
            lines.push_str(&json!({ "index": done + offset, "embedding": embedding }).to_string());
            lines.push('\n');
        }
        output
            .write_all(lines.as_bytes())
            .and_then(|()| output.flush())
            .map_err(|source| EmbedCommandError::Write {
                path: output_name.clone(),
                source,
            })?;
        done += batch.len();
        progress(done, texts.len(), started, resumed_at);
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    eprintln!("embedded {} inputs into {output_name}", done - resumed_at);
    Ok(())
}
