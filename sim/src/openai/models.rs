//! `GET /v1/models` and `GET /v1/models/{model}`.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::catalog::ModelEntry;
use crate::error::{ApiError, OpenAiError};
use crate::reply;
use crate::state::Sim;

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    owned_by: &'a str,
}

impl<'a> ModelObject<'a> {
    fn of(entry: &'a ModelEntry, sim: &Sim) -> Self {
        Self {
            id: &entry.name,
            object: "model",
            created: entry.profile(sim.config().embedding_dim).modified_seconds(),
            owned_by: entry.namespace(),
        }
    }
}

/// `GET /v1/models`. With no models the list is `null`, as the Go code writes it.
pub(crate) async fn models(sim: web::Data<Sim>) -> HttpResponse {
    #[derive(Serialize)]
    struct ModelList<'a> {
        object: &'static str,
        data: Option<Vec<ModelObject<'a>>>,
    }

    let catalog = sim.catalog();
    let data: Vec<_> = catalog
        .iter()
        .map(|entry| ModelObject::of(entry, &sim))
        .collect();
    reply::openai(&ModelList {
        object: "list",
        data: (!data.is_empty()).then_some(data),
    })
}

/// `GET /v1/models/{model}`.
pub(crate) async fn model(
    sim: web::Data<Sim>,
    name: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let entry = sim
        .find(&name)
        .ok_or_else(|| ApiError::model_not_found(&name))?;
    Ok(reply::openai(&ModelObject::of(&entry, &sim)))
}
