//! Authentication and authorization, as an aggregated API server does them.
//! (To be written by the auth/TLS work: front-proxy client certificate against the
//! requestheader CA + allowed names, then X-Remote-User/X-Remote-Group; bearer tokens via
//! TokenReview; SubjectAccessReview, cached briefly; `--allow-anonymous` for local use.)

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}
