//! The API's errors as SES v2 answers them (REST-JSON): the HTTP status,
//! the `x-amzn-ErrorType` header and a JSON body with `__type` and
//! `message`, which the AWS SDKs turn into the named exception.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One SES error: its type (the SDK's exception name) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// `BadRequestException` (400): a field is missing or invalid.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new("BadRequestException", message)
    }

    /// `NotFoundException` (404).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("NotFoundException", message)
    }

    /// `MessageRejected` (400).
    pub fn rejected(message: impl Into<String>) -> ApiError {
        ApiError::new("MessageRejected", message)
    }

    /// The HTTP status SES gives this error type.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            "NotFoundException" => StatusCode::NOT_FOUND,
            "TooManyRequestsException" => StatusCode::TOO_MANY_REQUESTS,
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "MissingAuthenticationTokenException"
            | "IncompleteSignatureException"
            | "AccessDeniedException" => StatusCode::FORBIDDEN,
            "UnknownOperationException" => StatusCode::NOT_FOUND,
            "RequestEntityTooLargeException" => StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTimeoutException" => StatusCode::REQUEST_TIMEOUT,
            "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.kind, "message": self.message });
        let mut r = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            r.headers_mut().insert("x-amzn-ErrorType", v);
        }
        r
    }
}

impl From<super::sigv4::SigError> for ApiError {
    fn from(e: super::sigv4::SigError) -> ApiError {
        use super::sigv4::SigError as S;
        match e {
            S::Missing => ApiError::new(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
            S::Malformed(why) => ApiError::new("IncompleteSignatureException", why),
            S::UnknownKey(_) => ApiError::new(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ),
            S::Mismatch => ApiError::new(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ),
            S::Expired(why) | S::WrongScope(why) => ApiError::new("SignatureDoesNotMatch", why),
        }
    }
}
