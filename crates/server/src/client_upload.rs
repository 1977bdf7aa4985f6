//! The proxy's calls of the upload routes (`api/uploads.rs`), on the same
//! [`Client`] (and so the same pool of keep-alive mutual-TLS connections)
//! as its work and progress calls.

use crate::api::upload_wire::{
    Aborted, CommitUpload, Committed, KnownChunks, KnownReply, OpenUpload, PutReply, UploadOpened,
};
use crate::client::{Client, ClientError};
use lifeboat_repo::Digest;

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// `POST /api/v1/proxy/sessions/{id}/upload`.
    pub fn upload_open(&self, session: i64, request: &OpenUpload) -> Result<UploadOpened> {
        self.send(
            "POST",
            &format!("/api/v1/proxy/sessions/{session}/upload"),
            Some(request),
        )
    }

    /// `POST /api/v1/proxy/uploads/{id}/known`: one flag per digest.
    pub fn upload_known(&self, upload: &str, digests: &[Digest]) -> Result<Vec<bool>> {
        let reply: KnownReply = self.send(
            "POST",
            &format!("/api/v1/proxy/uploads/{upload}/known"),
            Some(&KnownChunks {
                digests: digests.to_vec(),
            }),
        )?;
        if reply.present.len() != digests.len() {
            return Err(ClientError::Decode {
                what: format!("POST /api/v1/proxy/uploads/{upload}/known"),
                detail: format!(
                    "{} answers to {} digests",
                    reply.present.len(),
                    digests.len()
                ),
            });
        }
        Ok(reply.present)
    }

    /// `PUT /api/v1/proxy/uploads/{id}/chunks/{digest}` of `blob`.
    pub fn upload_put(&self, upload: &str, digest: &Digest, blob: &[u8]) -> Result<PutReply> {
        self.exchange(
            "PUT",
            &format!("/api/v1/proxy/uploads/{upload}/chunks/{digest}"),
            Some(("application/octet-stream", blob)),
            false,
        )
    }

    /// `POST /api/v1/proxy/uploads/{id}/commit`.
    pub fn upload_commit(&self, upload: &str, request: &CommitUpload) -> Result<Committed> {
        self.send(
            "POST",
            &format!("/api/v1/proxy/uploads/{upload}/commit"),
            Some(request),
        )
    }

    /// `DELETE /api/v1/proxy/uploads/{id}`.
    pub fn upload_abort(&self, upload: &str) -> Result<Aborted> {
        self.send(
            "DELETE",
            &format!("/api/v1/proxy/uploads/{upload}"),
            None::<&()>,
        )
    }
}
