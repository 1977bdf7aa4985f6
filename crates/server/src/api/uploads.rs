//! The upload routes (mutual TLS, an enrolled proxy's certificate): a
//! proxy running a session opens an upload into the job's repository,
//! asks which chunks the repository has, puts the blobs of the others
//! (encoded and encrypted on the proxy), and commits the restore point;
//! the server writes the indexes and the manifest, checks first that
//! every chunk they name is there, and applies the job's retention.
//! Bodies are in `upload_wire.rs`; the open uploads in `crate::uploads`.
//!
//! An upload belongs to the session and the proxy that opened it: another
//! proxy's requests find no such upload, and a commit after the session
//! ended (its lease expired) is refused and leaves nothing.

use super::proxy_work::session_id;
use super::response::{too_large, ApiJson};
use super::upload_wire::{
    Aborted, CommitUpload, Committed, KnownChunks, KnownReply, OpenUpload, PutReply, UploadOpened,
    WireKeys, MAX_KNOWN_BATCH,
};
use crate::catalog::sessions::SessionState;
use crate::error::{Error, ErrorKind, Result};
use crate::proxies::auth::ProxyCaller;
use crate::state::{AppState, Shared};
use crate::uploads::Upload;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::Json;
use lifeboat_repo::{Digest, Repository, Stored};
use std::sync::Arc;

/// A repository error of `repo` as the proxy should see it: what it sent
/// that the repository refuses is a 400, the rest the server's (500).
fn repo_error(repo: &str, e: lifeboat_repo::Error) -> Error {
    match e {
        lifeboat_repo::Error::Invalid { .. } | lifeboat_repo::Error::InvalidName { .. } => {
            Error::bad_request(e.to_string())
        }
        source => Error::Repository {
            name: repo.to_string(),
            source,
        },
    }
}

/// Refuses unless session `id` runs on `proxy` now.
fn check_holds(s: &Shared, id: i64, proxy: &str) -> Result<()> {
    let session = s.catalog.session(id)?.ok_or_else(|| Error::NotFound {
        what: format!("session {id}"),
    })?;
    if session.state != SessionState::Running || session.proxy.as_deref() != Some(proxy) {
        return Err(Error::Request {
            kind: ErrorKind::Conflict,
            message: format!(
                "session {id} is {} and not running on proxy {proxy} (its lease expired?)",
                session.state.as_str()
            ),
        });
    }
    Ok(())
}

/// The latest restore point of `vm` with its indexes, if any.
fn previous(
    repo: &Repository,
    name: &str,
    vm: &str,
) -> Result<Option<super::upload_wire::Previous>> {
    let manifest = match repo.resolve(&format!("{vm}@latest")) {
        Ok(m) => m,
        Err(lifeboat_repo::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(repo_error(name, e)),
    };
    let mut indexes = Vec::with_capacity(manifest.disks.len());
    for d in &manifest.disks {
        let index = repo
            .load_index(&manifest, &d.name)
            .map_err(|e| repo_error(name, e))?;
        indexes.push((d.name.clone(), index));
    }
    Ok(Some(super::upload_wire::Previous { manifest, indexes }))
}

/// `POST /api/v1/proxy/sessions/{id}/upload`.
pub async fn open(
    State(state): State<AppState>,
    caller: ProxyCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OpenUpload>,
) -> Result<Json<UploadOpened>> {
    let session = session_id(&id)?;
    let proxy = caller.proxy.name;
    let opened = state
        .blocking(move |s| {
            check_holds(s, session, &proxy)?;
            let job = s
                .catalog
                .job(
                    &s.catalog
                        .session(session)?
                        .map(|x| x.job)
                        .unwrap_or_default(),
                )?
                .ok_or_else(|| Error::NotFound {
                    what: format!("the job of session {session}"),
                })?;
            let served = s
                .repositories
                .get(&job.repository)
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    what: format!("repository {:?}", job.repository),
                })?;
            let repo = &served.repo;
            let previous = match body.previous {
                true => previous(repo, &served.name, &job.name)?,
                false => None,
            };
            let writer = repo
                .begin_backup()
                .map_err(|e| repo_error(&served.name, e))?;
            let (chunk_size, zstd_level) = (repo.chunk_size(), repo.zstd_level());
            let chunk_keys = repo.chunk_keys().map(|k| WireKeys(k.to_hex()));
            let vm = job.name.clone();
            let upload = s.uploads.open(session, &proxy, job, served, writer)?;
            s.metrics.upload_opened();
            tracing::info!(upload = upload.id, session, proxy, vm, "upload opened");
            Ok(UploadOpened {
                upload: upload.id.clone(),
                vm,
                chunk_size,
                zstd_level,
                chunk_keys,
                max_known_batch: MAX_KNOWN_BATCH,
                max_blob: lifeboat_repo::max_chunk_blob_len(chunk_size) as u64,
                previous,
            })
        })
        .await?;
    Ok(Json(opened))
}

/// `POST /api/v1/proxy/uploads/{id}/known`.
pub async fn known(
    State(state): State<AppState>,
    caller: ProxyCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KnownChunks>,
) -> Result<Json<KnownReply>> {
    if body.digests.len() > MAX_KNOWN_BATCH {
        return Err(Error::bad_request(format!(
            "at most {MAX_KNOWN_BATCH} digests per call"
        )));
    }
    let upload = state.inner.uploads.get(&id, &caller.proxy.name)?;
    let writer = upload.writer()?;
    let present = state
        .blocking(move |_| {
            body.digests
                .iter()
                .map(|d| writer.reuse_chunk(d))
                .collect::<lifeboat_repo::Result<Vec<bool>>>()
                .map_err(|e| repo_error(&upload.repo.name, e))
        })
        .await?;
    Ok(Json(KnownReply { present }))
}

/// `PUT /api/v1/proxy/uploads/{id}/chunks/{digest}`: the body is the
/// chunk's blob as the repository stores it.
pub async fn put(
    State(state): State<AppState>,
    caller: ProxyCaller,
    Path((id, digest)): Path<(String, String)>,
    body: Body,
) -> Result<Json<PutReply>> {
    let digest: Digest = digest
        .parse()
        .map_err(|e| Error::bad_request(format!("chunk digest {digest:?}: {e}")))?;
    let upload = state.inner.uploads.get(&id, &caller.proxy.name)?;
    let limit = lifeboat_repo::max_chunk_blob_len(upload.repo.repo.chunk_size());
    let blob = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(limit))?;
    let writer = upload.writer()?;
    let up: Arc<Upload> = upload.clone();
    let stored = state
        .blocking(move |_| {
            writer
                .store_encoded(&digest, &blob)
                .map_err(|e| repo_error(&up.repo.name, e))
        })
        .await?;
    let reply = match stored {
        Stored::New { stored_bytes } => {
            upload.add_stored(stored_bytes);
            state.metrics().chunk_uploaded(stored_bytes);
            PutReply {
                new: true,
                stored_bytes,
            }
        }
        Stored::Existing => PutReply {
            new: false,
            stored_bytes: 0,
        },
    };
    Ok(Json(reply))
}

/// `POST /api/v1/proxy/uploads/{id}/commit`.
pub async fn commit(
    State(state): State<AppState>,
    caller: ProxyCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CommitUpload>,
) -> Result<Json<Committed>> {
    let proxy = caller.proxy.name;
    let upload = state.inner.uploads.take(&id, &proxy)?;
    let committed = state
        .blocking(move |s| {
            check_holds(s, upload.session, &proxy)?;
            let name = upload.repo.name.as_str();
            if body.disks.is_empty() {
                return Err(Error::bad_request("a restore point needs at least one disk"));
            }
            let writer = upload.take_writer()?;
            let disks = body.disks;
            let missing = writer
                .missing_chunks(&disks)
                .map_err(|e| repo_error(name, e))?;
            if let Some(first) = missing.first() {
                return Err(Error::Request {
                    kind: ErrorKind::Conflict,
                    message: format!(
                        "the indexes refer to {} chunk(s) the repository does not hold and this upload never stored, e.g. {first}",
                        missing.len()
                    ),
                });
            }
            let vm = upload.job.name.as_str();
            let manifest = match body.consistency {
                Some(c) => writer.commit_consistent(vm, disks, c),
                None => writer.commit(vm, disks),
            }
            .map_err(|e| repo_error(name, e))?;
            tracing::info!(
                upload = upload.id,
                session = upload.session,
                restore_point = %manifest.name(),
                "upload committed"
            );
            let retention = crate::jobs::execute::apply_retention(&upload.repo.repo, &upload.job);
            Ok(Committed {
                manifest,
                bytes_stored: upload
                    .stored_bytes
                    .load(std::sync::atomic::Ordering::Relaxed),
                retention,
            })
        })
        .await?;
    Ok(Json(committed))
}

/// `DELETE /api/v1/proxy/uploads/{id}`.
pub async fn abort(
    State(state): State<AppState>,
    caller: ProxyCaller,
    Path(id): Path<String>,
) -> Result<Json<Aborted>> {
    let upload = state.inner.uploads.take(&id, &caller.proxy.name)?;
    tracing::info!(
        upload = upload.id,
        session = upload.session,
        "upload aborted"
    );
    // Its writer goes with the last request holding it: staged chunks
    // removed, no restore point.
    state
        .blocking(move |_| {
            drop(upload);
            Ok(())
        })
        .await?;
    Ok(Json(Aborted { aborted: id }))
}
