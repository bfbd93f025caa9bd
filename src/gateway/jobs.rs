//! Asynchronous batch embedding.
//!
//! - `POST /sollol/batch/jobs` (body as for `/sollol/batch/embed`) starts a job and answers
//!   202 with its id at once.
//! - `GET /sollol/batch/jobs/{id}` gives its state and progress (total, done, failed).
//! - `GET /sollol/batch/jobs/{id}/results` streams NDJSON lines
//!   `{"index": i, "embedding": [...]}` or `{"index": i, "error": "..."}`, in input order,
//!   as they are written, until the job ends.
//! - `DELETE /sollol/batch/jobs/{id}` cancels it: no chunk starts after that, and the
//!   chunks waiting for a worker are dropped.
//!
//! Results go to a file per job as they come, so memory stays bounded by the chunks in
//! flight, not by the size of the batch. Finished jobs are kept (the oldest forgotten,
//! with their files, past [`MAX_JOBS`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::batch::{embed_chunks, parse};
use super::error::{Flavour, GatewayError};
use super::state::AppState;

/// Jobs remembered at most; the oldest finished ones are forgotten first.
pub const MAX_JOBS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Completed,
    Cancelled,
}

pub struct BatchJob {
    id: String,
    number: u64,
    model: String,
    total: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    state: Mutex<JobState>,
    cancelled: AtomicBool,
    path: PathBuf,
    created: SystemTime,
}

impl BatchJob {
    fn state(&self) -> JobState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: JobState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    fn progress(&self) -> Value {
        let done = self.done.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        json!({
            "id": self.id,
            "model": self.model,
            "state": self.state(),
            "total": self.total,
            "done": done,
            "failed": failed,
            "pending": self.total.saturating_sub(done + failed),
            "created_at": self.created.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        })
    }
}

/// The gateway's batch jobs.
pub struct BatchJobs {
    dir: PathBuf,
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<BatchJob>>>,
}

impl BatchJobs {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("sollol-batches-{}", std::process::id()));
        Self {
            dir,
            next: AtomicU64::new(1),
            jobs: Mutex::new(BTreeMap::new()),
        }
    }

    fn find(&self, id: &str) -> Option<Arc<BatchJob>> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.values().find(|job| job.id == id).cloned()
    }

    fn add(&self, job: Arc<BatchJob>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        while jobs.len() >= MAX_JOBS {
            let oldest_finished = jobs
                .iter()
                .find(|(_, job)| job.state() != JobState::Running)
                .map(|(n, _)| *n);
            let Some(number) = oldest_finished else { break };
            if let Some(old) = jobs.remove(&number) {
                let _ = std::fs::remove_file(&old.path);
            }
        }
        jobs.insert(job.number, job);
    }

    /// Removes every result file (on shutdown).
    pub fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Default for BatchJobs {
    fn default() -> Self {
        Self::new()
    }
}

fn not_found(id: &str) -> HttpResponse {
    GatewayError::new(StatusCode::NOT_FOUND, format!("batch job '{id}' not found"))
        .into_response(Flavour::Ollama)
}

/// `POST /sollol/batch/jobs`.
pub async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let batch = match parse(&request, payload, &state).await {
        Ok(batch) => Arc::new(batch),
        Err(err) => return err.into_response(Flavour::Ollama),
    };
    let jobs = &state.batch_jobs;
    if let Err(err) = std::fs::create_dir_all(&jobs.dir) {
        return GatewayError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot create the results directory: {err}"),
        )
        .into_response(Flavour::Ollama);
    }
    let number = jobs.next.fetch_add(1, Ordering::Relaxed);
    let id = format!("batch-{number}-{:08x}", rand::random::<u32>());
    let path = jobs.dir.join(format!("{id}.ndjson"));
    let file = match std::fs::File::create(&path) {
        Ok(file) => file,
        Err(err) => {
            return GatewayError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot create the results file: {err}"),
            )
            .into_response(Flavour::Ollama)
        }
    };
    let job = Arc::new(BatchJob {
        id: id.clone(),
        number,
        model: batch.model.clone(),
        total: batch.inputs.len(),
        done: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        state: Mutex::new(JobState::Running),
        cancelled: AtomicBool::new(false),
        path,
        created: SystemTime::now(),
    });
    jobs.add(job.clone());
    tracing::info!(job = %id, model = %batch.model, inputs = batch.inputs.len(), "batch job started");

    let results = embed_chunks(&state, batch.clone(), Some(number));
    let chunk_size = state.settings.batch_chunk_size;
    let running = job.clone();
    actix_rt::spawn(async move {
        let mut writer = std::io::BufWriter::new(file);
        let mut results = Box::pin(results);
        while !running.cancelled.load(Ordering::Relaxed) {
            let Some((first, outcome)) = results.next().await else {
                break;
            };
            if running.cancelled.load(Ordering::Relaxed) {
                break;
            }
            let count = chunk_size.min(running.total - first);
            let (lines, succeeded): (Vec<String>, bool) = match outcome {
                Ok(vectors) => (
                    vectors
                        .into_iter()
                        .enumerate()
                        .map(|(offset, embedding)| {
                            json!({ "index": first + offset, "embedding": embedding }).to_string()
                        })
                        .collect(),
                    true,
                ),
                Err(err) => (
                    (first..first + count)
                        .map(|index| json!({ "index": index, "error": err.message }).to_string())
                        .collect(),
                    false,
                ),
            };
            let written = lines
                .iter()
                .try_for_each(|line| writeln!(writer, "{line}"))
                .and_then(|()| writer.flush());
            if let Err(err) = written {
                tracing::error!(job = %running.id, error = %err, "cannot write batch results; stopping the job");
                running.cancelled.store(true, Ordering::Relaxed);
                break;
            }
            let counter = if succeeded {
                &running.done
            } else {
                &running.failed
            };
            counter.fetch_add(lines.len(), Ordering::Relaxed);
        }
        // Dropping the stream drops the chunks still in flight.
        drop(results);
        let end = if running.cancelled.load(Ordering::Relaxed) {
            JobState::Cancelled
        } else {
            JobState::Completed
        };
        running.set_state(end);
        tracing::info!(
            job = %running.id,
            state = ?end,
            done = running.done.load(Ordering::Relaxed),
            failed = running.failed.load(Ordering::Relaxed),
            "batch job ended"
        );
    });

    HttpResponse::Accepted().json(json!({
        "id": id,
        "total": job.total,
        "status_url": format!("/sollol/batch/jobs/{id}"),
        "results_url": format!("/sollol/batch/jobs/{id}/results"),
    }))
}

/// `GET /sollol/batch/jobs/{id}`.
pub async fn status(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    match state.batch_jobs.find(&path) {
        Some(job) => HttpResponse::Ok().json(job.progress()),
        None => not_found(&path),
    }
}

/// `DELETE /sollol/batch/jobs/{id}`.
pub async fn cancel(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(job) = state.batch_jobs.find(&path) else {
        return not_found(&path);
    };
    if job.state() == JobState::Running {
        job.cancelled.store(true, Ordering::Relaxed);
        let dropped = match &state.workers {
            Some(workers) => workers.cancel_batch(job.number).await,
            None => 0,
        };
        tracing::info!(job = %job.id, dropped_chunks = dropped, "batch job cancelled");
        // The driver notices at its next chunk; wait briefly so the answer shows it.
        for _ in 0..50 {
            if job.state() != JobState::Running {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
    HttpResponse::Ok().json(job.progress())
}

/// `GET /sollol/batch/jobs/{id}/results`: the results file, followed until the job ends.
pub async fn results(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(job) = state.batch_jobs.find(&path) else {
        return not_found(&path);
    };
    let file = match std::fs::File::open(&job.path) {
        Ok(file) => file,
        Err(err) => {
            return GatewayError::new(
                StatusCode::GONE,
                format!("the results of batch job '{}' are gone: {err}", job.id),
            )
            .into_response(Flavour::Ollama)
        }
    };
    let lines = futures_util::stream::unfold(
        (std::io::BufReader::new(file), job, String::new(), false),
        |(mut reader, job, mut partial, finished)| async move {
            use std::io::BufRead;
            if finished {
                return None;
            }
            loop {
                let ended = job.state() != JobState::Running;
                let mut chunk = String::new();
                let read = reader.read_line(&mut chunk).unwrap_or(0);
                if read > 0 {
                    partial.push_str(&chunk);
                    if partial.ends_with('\n') {
                        let line = Bytes::from(std::mem::take(&mut partial));
                        return Some((
                            Ok::<Bytes, actix_web::Error>(line),
                            (reader, job, partial, false),
                        ));
                    }
                    continue;
                }
                if ended {
                    return None;
                }
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        },
    );
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(lines)
}
