//! Client errors, classified as retryable or permanent: the retry loop, the
//! start-up sequence and the dead-letter routing all decide on that.

use std::fmt;

use crate::config::ConfigError;
use crate::model::{ProblemDetails, RuleType, RuleViolationCause};

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (refused, DNS, TLS, reset).
    #[error("cannot reach the schema registry at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer within the configured timeout.
    #[error("the schema registry did not answer {method} {url} in time")]
    Timeout { method: String, url: String },
    /// The connection broke while the request or answer was in flight.
    #[error("{method} {url} failed in transit: {source}")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused content because of one of its rules.
    #[error("{0}")]
    RuleViolation(Box<RuleViolation>),
    /// Nothing at that id, artifact, version or rule.
    #[error("not found: {method} {url}{}", problem_suffix(.problem))]
    NotFound {
        method: String,
        url: String,
        problem: Option<Box<ProblemDetails>>,
    },
    /// Any other non-success status.
    #[error("{method} {url} answered {status}{}", problem_suffix(.problem))]
    Status {
        method: String,
        url: String,
        status: u16,
        /// Seconds from a `Retry-After` header, if the registry sent one.
        retry_after: Option<u64>,
        problem: Option<Box<ProblemDetails>>,
        /// The start of a body that is not a problem document.
        body: Option<String>,
    },
    /// A success answer whose body is not what the API promises.
    #[error("{method} {url} answered with a body that is not {expected}: {reason}")]
    InvalidResponse {
        method: String,
        url: String,
        expected: &'static str,
        reason: String,
    },
    /// The client could not be built from its config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry returned a writer schema that does not parse.
    #[error("schema {id} from the registry does not parse: {source}")]
    Schema {
        id: String,
        #[source]
        source: gridwatch_contracts::CodecError,
    },
    /// The frame's id kind does not exist in this registry's API (a legacy
    /// 8-byte globalId sent to a Confluent registry).
    #[error("{id} cannot be looked up in a {api} registry")]
    UnsupportedId { id: String, api: &'static str },
    /// A framed message could not be split into schema id and datum.
    #[error(transparent)]
    Framing(#[from] gridwatch_contracts::framing::FramingError),
    /// The datum does not decode with the writer schema the registry gave.
    #[error(transparent)]
    Decode(gridwatch_contracts::CodecError),
}

fn problem_suffix(problem: &Option<Box<ProblemDetails>>) -> String {
    match problem {
        Some(p) => {
            let mut s = String::new();
            if let Some(title) = p.title.as_deref().filter(|t| !t.is_empty()) {
                s.push_str(": ");
                s.push_str(title);
            }
            if let Some(detail) = p.detail.as_deref().filter(|d| !d.is_empty())
                && p.title.as_deref() != Some(detail)
            {
                s.push_str(if s.is_empty() { ": " } else { " — " });
                s.push_str(detail);
            }
            s
        }
        None => String::new(),
    }
}

impl RegistryError {
    /// Whether trying the same call again later can succeed: connect errors,
    /// timeouts, broken connections, 5xx and 429. Everything else is permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            Self::RuleViolation(_)
            | Self::NotFound { .. }
            | Self::InvalidResponse { .. }
            | Self::Config(_)
            | Self::Schema { .. }
            | Self::UnsupportedId { .. }
            | Self::Framing(_)
            | Self::Decode(_) => false,
        }
    }

    /// The HTTP status, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RuleViolation(_) => Some(409),
            Self::NotFound { .. } => Some(404),
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The rule violation, if this is one.
    pub fn rule_violation(&self) -> Option<&RuleViolation> {
        match self {
            Self::RuleViolation(v) => Some(v),
            _ => None,
        }
    }
}

/// A registry rule refused a schema: which schema, which rule, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// The group of the refused schema, when known.
    pub group: Option<String>,
    /// The artifact id of the refused schema, when known.
    pub artifact_id: Option<String>,
    /// The rule, from the problem body or inferred from its wording.
    pub rule_type: Option<RuleType>,
    /// The rule's config, e.g. `BACKWARD`, when the registry says or the
    /// client could look it up.
    pub rule_config: Option<String>,
    /// The problem's title: Apicurio's one-line summary.
    pub title: String,
    /// The problem's detail.
    pub detail: Option<String>,
    /// Each incompatibility, with where in the schema it is.
    pub causes: Vec<RuleViolationCause>,
}

impl RuleViolation {
    /// Builds a violation from a 409 problem body.
    pub fn from_problem(problem: &ProblemDetails) -> Self {
        let title = problem.title.clone().unwrap_or_default();
        let rule_type = problem.rule_type.or_else(|| infer_rule_type(problem));
        Self {
            group: None,
            artifact_id: None,
            rule_type,
            rule_config: problem.rule_config.clone(),
            title,
            detail: problem.detail.clone().filter(|d| !d.is_empty()),
            causes: problem.causes.clone().unwrap_or_default(),
        }
    }
}

/// Apicurio's problem body names the exception, not the rule; its wording
/// tells them apart.
fn infer_rule_type(problem: &ProblemDetails) -> Option<RuleType> {
    let text = format!(
        "{} {}",
        problem.title.as_deref().unwrap_or_default(),
        problem.detail.as_deref().unwrap_or_default()
    )
    .to_ascii_lowercase();
    if text.contains("compatib") {
        Some(RuleType::Compatibility)
    } else if text.contains("integrity") || text.contains("reference") {
        Some(RuleType::Integrity)
    } else if text.contains("valid") || text.contains("syntax") || text.contains("parse") {
        Some(RuleType::Validity)
    } else {
        None
    }
}

/// Whether a 409 problem is a rule violation rather than an "already exists".
pub(crate) fn is_rule_violation(problem: &ProblemDetails) -> bool {
    problem.causes.is_some()
        || problem.rule_type.is_some()
        || problem
            .name
            .as_deref()
            .is_some_and(|n| n.contains("RuleViolation"))
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("schema ")?;
        match &self.artifact_id {
            Some(a) => write!(f, "'{a}'")?,
            None => f.write_str("(unnamed)")?,
        }
        if let Some(g) = &self.group {
            write!(f, " in group '{g}'")?;
        }
        f.write_str(" was rejected by the registry's ")?;
        match self.rule_type {
            Some(rule) => write!(f, "{rule} rule")?,
            None => f.write_str("rules")?,
        }
        if let Some(config) = &self.rule_config {
            write!(f, " ({config})")?;
        }
        f.write_str(": ")?;
        // The detail explains; the title summarises. Say the most specific once.
        let reason = self.detail.as_deref().unwrap_or(&self.title);
        f.write_str(if reason.is_empty() {
            "no reason given"
        } else {
            reason
        })?;
        let causes: Vec<String> = self
            .causes
            .iter()
            // A cause the reason already covers (by text or by location) is not repeated.
            .filter(|c| {
                !(reason.contains(&c.description)
                    || (!c.context.is_empty() && reason.contains(&c.context)))
            })
            .map(ToString::to_string)
            .collect();
        if !causes.is_empty() {
            write!(f, "; causes: {}", causes.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleViolation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apicurio_rule_violation_body_names_schema_rule_and_reason() {
        // The shape Apicurio 3 answers with, without our extension members.
        let problem: ProblemDetails = serde_json::from_value(serde_json::json!({
            "status": 409,
            "name": "RuleViolationException",
            "title": "Incompatible artifact: io.gridwatch.SensorReading [AVRO], num of incompatible diffs: {1}",
            "detail": "",
            "causes": [{"description": "READER_FIELD_MISSING_DEFAULT_VALUE: region", "context": "/fields/6"}]
        }))
        .unwrap();
        assert!(is_rule_violation(&problem));
        let mut v = RuleViolation::from_problem(&problem);
        v.group = Some("gridwatch".into());
        v.artifact_id = Some("io.gridwatch.SensorReading".into());
        v.rule_config = Some("BACKWARD".into());
        assert_eq!(
            v.to_string(),
            "schema 'io.gridwatch.SensorReading' in group 'gridwatch' was rejected by the \
             registry's COMPATIBILITY rule (BACKWARD): Incompatible artifact: \
             io.gridwatch.SensorReading [AVRO], num of incompatible diffs: {1}; causes: \
             READER_FIELD_MISSING_DEFAULT_VALUE: region (at /fields/6)"
        );
    }

    #[test]
    fn conflicts_that_are_not_rule_violations_are_told_apart() {
        let exists = ProblemDetails {
            status: Some(409),
            name: Some("ArtifactAlreadyExistsException".into()),
            ..ProblemDetails::default()
        };
        assert!(!is_rule_violation(&exists));
    }

    #[test]
    fn retryability_follows_the_status() {
        let status = |status| RegistryError::Status {
            method: "GET".into(),
            url: "u".into(),
            status,
            retry_after: None,
            problem: None,
            body: None,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        let nf = RegistryError::NotFound {
            method: "GET".into(),
            url: "u".into(),
            problem: None,
        };
        assert!(!nf.is_retryable());
    }
}
