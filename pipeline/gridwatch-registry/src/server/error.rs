//! Errors the embedded registry answers with, as Apicurio shapes them:
//! `application/problem+json` with `status`, `title`, `detail` and `name`
//! (Apicurio's exception name), plus `causes` for rule violations.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::model::{ProblemDetails, RuleType, RuleViolationCause};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) name: &'static str,
    pub(crate) title: String,
    pub(crate) detail: Option<String>,
    pub(crate) causes: Option<Vec<RuleViolationCause>>,
    pub(crate) rule_type: Option<RuleType>,
    pub(crate) rule_config: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, name: &'static str, title: impl Into<String>) -> Self {
        Self {
            status,
            name,
            title: title.into(),
            detail: None,
            causes: None,
            rule_type: None,
            rule_config: None,
        }
    }

    pub(crate) fn bad_request(title: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", title)
    }

    pub(crate) fn group_not_found(group: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "GroupNotFoundException",
            format!("No group '{group}' was found."),
        )
    }

    pub(crate) fn artifact_not_found(group: &str, artifact: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ArtifactNotFoundException",
            format!("No artifact with ID '{artifact}' in group '{group}' was found."),
        )
    }

    pub(crate) fn version_not_found(group: &str, artifact: &str, version: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "VersionNotFoundException",
            format!(
                "No version '{version}' found for artifact with ID '{artifact}' in group '{group}'."
            ),
        )
    }

    pub(crate) fn rule_not_found(rule: RuleType) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "RuleNotFoundException",
            format!("No rule named '{rule}' was found."),
        )
    }

    pub(crate) fn storage(err: &super::store::StoreError) -> Self {
        tracing::error!(error = %err, "The embedded registry cannot write its log.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal Server Error",
        )
        .with_detail("The registry could not persist the change.")
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn problem(&self) -> ProblemDetails {
        ProblemDetails {
            problem_type: None,
            title: Some(self.title.clone()),
            status: Some(self.status.as_u16()),
            detail: Some(self.detail.clone().unwrap_or_else(|| self.title.clone())),
            instance: None,
            name: Some(self.name.to_owned()),
            causes: self.causes.clone(),
            rule_type: self.rule_type,
            rule_config: self.rule_config.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
