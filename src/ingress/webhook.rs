//! The domain: what an Authvia delivery must look like before it may become a record.
//!
//! [`Webhook::parse`] is the only way to get a [`Webhook`]. It checks the body is JSON in one
//! pass, finds the record key at a configurable JSON pointer and checks the fields the spec
//! names for type and value, reading only those (see `webhook/json.rs`). Unknown fields and new enum values always pass: Authvia may add them at any
//! time and an addition must never lose an event. A body that fails is a [`Rejection`], which
//! the caller routes to the dead-letter topic.

use std::fmt;

use crate::config::{Pointer, Rules};

mod json;
mod shape;

/// The two Authvia subscription types the relay accepts, one per URL path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `business_processes.update`: the body is a business process.
    BusinessProcess,
    /// `business_processes_actions.update`: the body is one action of a process.
    Action,
}

impl EventKind {
    /// Both kinds, for tables indexed by kind.
    pub const ALL: [EventKind; 2] = [EventKind::BusinessProcess, EventKind::Action];

    /// The Authvia subscription type, used as the CloudEvents `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::BusinessProcess => "business_processes.update",
            Self::Action => "business_processes_actions.update",
        }
    }

    /// The route label of metrics, spans and logs (a closed set).
    pub fn label(self) -> &'static str {
        match self {
            Self::BusinessProcess => "business_processes",
            Self::Action => "business_process_actions",
        }
    }

    fn fields(self) -> &'static [shape::Field] {
        match self {
            Self::BusinessProcess => shape::BUSINESS_PROCESS,
            Self::Action => shape::ACTION,
        }
    }
}

/// A delivery that may be published: it has a key and its known fields are well-typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The process id: the record key and the CloudEvents subject.
    pub key: String,
    /// The process version as a decimal string, when the body has a numeric one.
    pub version: Option<String>,
}

/// Why an authenticated body cannot be published as a business process (a closed set: it is a
/// metric label and a dead-letter header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The body is not JSON (the subscription test payload may be anything).
    NotJson,
    /// The body is JSON but not an object.
    NotAnObject,
    /// Nothing at the key pointer.
    MissingKey,
    /// The key is not a non-empty string.
    InvalidKey,
    /// A required field is absent.
    MissingField,
    /// A known field has the wrong type or an unparseable value.
    InvalidField,
}

impl RejectReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [RejectReason; 6] = [
        Self::NotJson,
        Self::NotAnObject,
        Self::MissingKey,
        Self::InvalidKey,
        Self::MissingField,
        Self::InvalidField,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingKey => "missing_key",
            Self::InvalidKey => "invalid_key",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
        }
    }
}

/// A body that must go to the dead-letter topic. `detail` names fields and expected types,
/// never payload values (it is logged and sent as a header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    /// A human-readable explanation without payload values.
    pub detail: String,
    /// The key, when one was found: dead letters keep per-process ordering too.
    pub key: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

impl Webhook {
    /// Parses a delivery body of the given kind.
    ///
    /// # Errors
    /// A [`Rejection`] naming the first problem found.
    pub fn parse(kind: EventKind, body: &[u8], rules: &Rules) -> Result<Webhook, Rejection> {
        // One pass reads the top-level members and checks the whole document is JSON; the
        // rules then read only what they need.
        let object = json::Object::document(body).map_err(|error| match error {
            json::Document::NotJson(error) => Rejection {
                reason: RejectReason::NotJson,
                detail: format!(
                    "body is not JSON ({:?} error at line {} column {})",
                    error.classify(),
                    error.line(),
                    error.column()
                ),
                key: None,
            },
            json::Document::NotAnObject => reject(
                RejectReason::NotAnObject,
                "body is JSON but not an object",
                None,
            ),
        })?;
        let key = find_key(&object, key_pointer(rules, kind))?;
        let with_key = |reason, detail: String| reject(reason, detail, Some(key.clone()));
        for name in required_fields(rules, kind) {
            if !object.contains(name) {
                return Err(with_key(
                    RejectReason::MissingField,
                    format!("required field {name} is missing"),
                ));
            }
        }
        shape::check_fields(&object, kind.fields())
            .map_err(|mismatch| with_key(RejectReason::InvalidField, mismatch.detail()))?;
        let version = match kind {
            EventKind::BusinessProcess => version_of(&object, &rules.version_pointer)
                .map_err(|detail| with_key(RejectReason::InvalidField, detail))?,
            EventKind::Action => None,
        };
        Ok(Webhook { key, version })
    }
}

fn reject(reason: RejectReason, detail: impl Into<String>, key: Option<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
        key,
    }
}

/// Where the record key of a `kind` delivery is.
fn key_pointer(rules: &Rules, kind: EventKind) -> &Pointer {
    match kind {
        EventKind::BusinessProcess => &rules.key_pointer,
        EventKind::Action => &rules.actions_key_pointer,
    }
}

/// The top-level fields a `kind` delivery must have.
fn required_fields(rules: &Rules, kind: EventKind) -> &[String] {
    match kind {
        EventKind::BusinessProcess => &rules.required_fields,
        EventKind::Action => &rules.actions_required_fields,
    }
}

fn find_key(object: &json::Object<'_>, pointer: &Pointer) -> Result<String, Rejection> {
    let missing = || {
        reject(
            RejectReason::MissingKey,
            format!("no key at {}", pointer.as_str()),
            None,
        )
    };
    let value = object.at(pointer).ok_or_else(missing)?;
    if json::kind(value) == json::Kind::Null {
        return Err(missing());
    }
    match json::string(value) {
        Some(key) if !key.trim().is_empty() => Ok(key.into_owned()),
        _ => Err(reject(
            RejectReason::InvalidKey,
            format!("key at {} is not a non-empty string", pointer.as_str()),
            None,
        )),
    }
}

fn version_of(object: &json::Object<'_>, pointer: &Pointer) -> Result<Option<String>, String> {
    let Some(value) = object.at(pointer) else {
        return Ok(None);
    };
    match json::kind(value) {
        json::Kind::Null => Ok(None),
        // Printed as serde_json prints the number, whatever its spelling in the body.
        json::Kind::Number => serde_json::from_str::<serde_json::Number>(value.get())
            .map(|number| Some(number.to_string()))
            .map_err(|_| format!("{} is not a number", pointer.as_str())),
        _ => Err(format!("{} is not a number", pointer.as_str())),
    }
}

#[cfg(test)]
mod tests;
