//! Kubernetes label selectors (the `labelSelector` query parameter the HPA sends), parsed and
//! validated the way Kubernetes does it.
//! (To be written: see the interface below.)

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`, `key==value`
    Equals { key: String, value: String },
    /// `key!=value`
    NotEquals { key: String, value: String },
    /// `key in (a,b)`
    In { key: String, values: Vec<String> },
    /// `key notin (a,b)`
    NotIn { key: String, values: Vec<String> },
    /// `key`
    Exists { key: String },
    /// `!key`
    DoesNotExist { key: String },
}

/// A selector that cannot be used; the message says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {message}")]
pub struct SelectorError {
    pub selector: String,
    pub message: String,
}

/// Parses a selector; the empty string selects everything (no requirements).
pub fn parse(selector: &str) -> Result<Vec<Requirement>, SelectorError> {
    if selector.trim().is_empty() {
        return Ok(Vec::new());
    }
    Err(SelectorError {
        selector: selector.to_string(),
        message: "label selectors are not supported yet".into(),
    })
}
