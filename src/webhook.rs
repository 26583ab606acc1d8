//! The domain: what an Authvia delivery must look like before it may become a record.
//!
//! [`Webhook::parse`] is the only way to get a [`Webhook`]. It reads the body once as JSON,
//! finds the record key at a configurable JSON pointer and checks the fields the spec names for
//! type and value. Unknown fields and new enum values always pass: Authvia may add them at any
//! time and an addition must never lose an event. A body that fails is a [`Rejection`], which
//! the caller routes to the dead-letter topic.

use std::{fmt, str::FromStr};

use serde_json::{Map, Value};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

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

    fn fields(self) -> &'static [Field] {
        match self {
            Self::BusinessProcess => BUSINESS_PROCESS,
            Self::Action => ACTION,
        }
    }
}

/// A JSON pointer (RFC 6901), checked to be non-empty and to start with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    /// The pointer text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Pointer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('/') && s.len() > 1 {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("{s:?} is not a JSON pointer to a field (expected e.g. /id)"))
        }
    }
}

/// Where to find the key and which fields are required, per kind (configurable because
/// Authvia has not confirmed most field names).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Routes")]
pub struct Rules {
    /// JSON pointer to the process id in a business process (the record key).
    #[arg(long, env = "BP_RELAY_KEY_POINTER", default_value = "/id", global = true)]
    pub key_pointer: Pointer,

    /// JSON pointer to the owning process id in an action (the record key).
    #[arg(long, env = "BP_RELAY_ACTIONS_KEY_POINTER", default_value = "/businessProcess", global = true)]
    pub actions_key_pointer: Pointer,

    /// JSON pointer to the process version, copied to the `ce_processversion` header.
    #[arg(long, env = "BP_RELAY_VERSION_POINTER", default_value = "/version", global = true)]
    pub version_pointer: Pointer,

    /// Top-level fields a business process must have (names Authvia has not confirmed).
    #[arg(
        long,
        env = "BP_RELAY_REQUIRED_FIELDS",
        value_delimiter = ',',
        default_value = "id,partner,merchant,customer,status,expiration,actions,addresses",
        global = true
    )]
    pub required_fields: Vec<String>,

    /// Top-level fields an action must have.
    #[arg(long, env = "BP_RELAY_ACTIONS_REQUIRED_FIELDS", value_delimiter = ',', default_value = "id,type,status", global = true)]
    pub actions_required_fields: Vec<String>,
}

impl Rules {
    fn key(&self, kind: EventKind) -> &Pointer {
        match kind {
            EventKind::BusinessProcess => &self.key_pointer,
            EventKind::Action => &self.actions_key_pointer,
        }
    }

    fn required(&self, kind: EventKind) -> &[String] {
        match kind {
            EventKind::BusinessProcess => &self.required_fields,
            EventKind::Action => &self.actions_required_fields,
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
    /// The closed reason.
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
        let value: Value = serde_json::from_slice(body).map_err(|error| Rejection {
            reason: RejectReason::NotJson,
            detail: format!("body is not JSON ({:?} error at line {} column {})", error.classify(), error.line(), error.column()),
            key: None,
        })?;
        let Value::Object(object) = &value else {
            return Err(reject(RejectReason::NotAnObject, "body is JSON but not an object", None));
        };
        let key = find_key(&value, rules.key(kind))?;
        let with_key = |reason, detail: String| reject(reason, detail, Some(key.clone()));
        for name in rules.required(kind) {
            if !object.contains_key(name.as_str()) {
                return Err(with_key(RejectReason::MissingField, format!("required field {name} is missing")));
            }
        }
        check_fields(object, kind.fields()).map_err(|mismatch| with_key(RejectReason::InvalidField, mismatch.detail()))?;
        let version = match kind {
            EventKind::BusinessProcess => version_of(&value, &rules.version_pointer)
                .map_err(|detail| with_key(RejectReason::InvalidField, detail))?,
            EventKind::Action => None,
        };
        Ok(Webhook { key, version })
    }
}

fn reject(reason: RejectReason, detail: impl Into<String>, key: Option<String>) -> Rejection {
    Rejection { reason, detail: detail.into(), key }
}

fn find_key(value: &Value, pointer: &Pointer) -> Result<String, Rejection> {
    match value.pointer(pointer.as_str()) {
        None | Some(Value::Null) => Err(reject(
            RejectReason::MissingKey,
            format!("no key at {}", pointer.as_str()),
            None,
        )),
        Some(Value::String(key)) if !key.trim().is_empty() => Ok(key.clone()),
        Some(_) => Err(reject(
            RejectReason::InvalidKey,
            format!("key at {} is not a non-empty string", pointer.as_str()),
            None,
        )),
    }
}

fn version_of(value: &Value, pointer: &Pointer) -> Result<Option<String>, String> {
    match value.pointer(pointer.as_str()) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(format!("{} is not a number", pointer.as_str())),
    }
}

/// What a known field must be. Absent optional fields and `null` always pass.
#[derive(Debug, Clone, Copy)]
enum Shape {
    String,
    /// An RFC 3339 date-time string.
    DateTime,
    Number,
    Integer,
    Object,
    /// An array whose items are objects with these known fields.
    ArrayOf(&'static [Field]),
}

type Field = (&'static str, Shape);

// Field names follow docs/authvia-webhooks.md; which are required is configuration.
const BUSINESS_PROCESS: &[Field] = &[
    ("id", Shape::String),
    ("blueprint", Shape::String),
    ("partner", Shape::String),
    ("merchant", Shape::String),
    ("customer", Shape::String),
    ("status", Shape::String),
    ("statusReason", Shape::String),
    ("expiration", Shape::DateTime),
    ("version", Shape::Number),
    ("agentAddress", Shape::String),
    ("closedAt", Shape::String),
    ("actions", Shape::ArrayOf(PROCESS_ACTION)),
    ("addresses", Shape::ArrayOf(ADDRESS)),
];

const PROCESS_ACTION: &[Field] = &[
    ("id", Shape::String),
    ("type", Shape::String),
    ("status", Shape::String),
    ("union", Shape::Integer),
    ("context", Shape::Object),
    ("features", Shape::Object),
];

const ADDRESS: &[Field] = &[
    ("value", Shape::String),
    ("type", Shape::String),
    ("subType", Shape::String),
    ("status", Shape::String),
];

const ACTION: &[Field] = &[
    ("id", Shape::String),
    ("partner", Shape::String),
    ("merchant", Shape::String),
    ("businessProcess", Shape::String),
    ("customer", Shape::String),
    ("type", Shape::String),
    ("status", Shape::String),
    ("context", Shape::Object),
    ("features", Shape::Object),
];

/// A known field with the wrong shape. The path is collected while unwinding, so the happy
/// path allocates nothing for it.
struct Mismatch {
    // Innermost segment first.
    reversed_path: Vec<String>,
    expected: &'static str,
}

impl Mismatch {
    fn at(mut self, segment: impl ToString) -> Self {
        self.reversed_path.push(segment.to_string());
        self
    }

    fn detail(&self) -> String {
        let path: String = self.reversed_path.iter().rev().map(|segment| format!("/{segment}")).collect();
        format!("{path} is not {}", self.expected)
    }
}

fn check_fields(object: &Map<String, Value>, fields: &[Field]) -> Result<(), Mismatch> {
    for (name, shape) in fields {
        match object.get(*name) {
            None | Some(Value::Null) => {}
            Some(value) => check_shape(value, *shape).map_err(|mismatch| mismatch.at(name))?,
        }
    }
    Ok(())
}

fn check_shape(value: &Value, shape: Shape) -> Result<(), Mismatch> {
    let expected = match (shape, value) {
        (Shape::String, Value::String(_))
        | (Shape::Number, Value::Number(_))
        | (Shape::Object, Value::Object(_)) => return Ok(()),
        (Shape::Integer, Value::Number(n)) if n.is_u64() => return Ok(()),
        (Shape::DateTime, Value::String(text)) if OffsetDateTime::parse(text, &Rfc3339).is_ok() => {
            return Ok(())
        }
        (Shape::ArrayOf(fields), Value::Array(items)) => return check_items(items, fields),
        (Shape::String, _) => "a string",
        (Shape::DateTime, _) => "an RFC 3339 date-time",
        (Shape::Number, _) => "a number",
        (Shape::Integer, _) => "a non-negative integer",
        (Shape::Object, _) => "an object",
        (Shape::ArrayOf(_), _) => "an array",
    };
    Err(Mismatch { reversed_path: Vec::new(), expected })
}

fn check_items(items: &[Value], fields: &[Field]) -> Result<(), Mismatch> {
    for (index, item) in items.iter().enumerate() {
        let Value::Object(object) = item else {
            return Err(Mismatch { reversed_path: vec![index.to_string()], expected: "an object" });
        };
        check_fields(object, fields).map_err(|mismatch| mismatch.at(index))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            key_pointer: "/id".parse().unwrap(),
            actions_key_pointer: "/businessProcess".parse().unwrap(),
            version_pointer: "/version".parse().unwrap(),
            required_fields: ["id", "partner", "merchant", "customer", "status", "expiration", "actions", "addresses"]
                .map(String::from)
                .to_vec(),
            actions_required_fields: ["id", "type", "status"].map(String::from).to_vec(),
        }
    }

    fn sample(name: &str) -> &'static [u8] {
        crate::samples::get(name)
    }

    fn process(json: Value) -> Result<Webhook, Rejection> {
        Webhook::parse(EventKind::BusinessProcess, json.to_string().as_bytes(), &rules())
    }

    fn minimal() -> Value {
        serde_json::from_slice(sample("bp-minimal.json")).unwrap()
    }

    #[test]
    fn every_shared_business_process_sample_parses_with_its_id_as_key() {
        for (name, body) in crate::samples::BUSINESS_PROCESSES {
            let webhook = Webhook::parse(EventKind::BusinessProcess, body, &rules()).unwrap_or_else(|r| panic!("{name}: {r}"));
            let json: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(webhook.key, json["id"].as_str().unwrap(), "{name}");
        }
    }

    #[test]
    fn version_is_carried_when_present() {
        let webhook = Webhook::parse(EventKind::BusinessProcess, sample("bp-in-progress.json"), &rules()).unwrap();
        assert_eq!(webhook.version.as_deref(), Some("4"));
        assert_eq!(process(minimal()).unwrap().version, None);
    }

    #[test]
    fn action_is_keyed_by_its_owning_process() {
        let webhook = Webhook::parse(EventKind::Action, sample("action-update.json"), &rules()).unwrap();
        assert_eq!(webhook.key, "3f6c2a9e-8b1d-4c7a-9e52-0d4b7f1a6c33");
    }

    #[test]
    fn new_fields_and_new_enum_values_are_accepted() {
        let mut json = minimal();
        json["status"] = "paused-by-agent".into();
        json["statusReason"] = "cancelled".into();
        json["someFutureField"] = serde_json::json!({"nested": [1, 2]});
        json["actions"] = serde_json::json!([{"type": "crypto-payment", "status": "pending", "brandNew": true}]);
        json["addresses"] = serde_json::json!([{"value": "x", "type": "mobilePhone", "status": "verified"}]);
        assert!(process(json).is_ok());
    }

    #[test]
    fn body_that_is_not_json_is_rejected_as_not_json() {
        let rejection = Webhook::parse(EventKind::BusinessProcess, b"ping", &rules()).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::NotJson);
        assert_eq!(rejection.key, None);
    }

    #[test]
    fn json_array_is_not_an_object() {
        let rejection = process(serde_json::json!([1])).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::NotAnObject);
    }

    #[test]
    fn missing_empty_or_non_string_key_is_rejected() {
        let mut json = minimal();
        json.as_object_mut().unwrap().remove("id");
        assert_eq!(process(json).unwrap_err().reason, RejectReason::MissingKey);
        let mut json = minimal();
        json["id"] = "  ".into();
        assert_eq!(process(json).unwrap_err().reason, RejectReason::InvalidKey);
        let mut json = minimal();
        json["id"] = 42.into();
        assert_eq!(process(json).unwrap_err().reason, RejectReason::InvalidKey);
    }

    #[test]
    fn missing_required_field_is_rejected_with_the_key_kept() {
        let mut json = minimal();
        json.as_object_mut().unwrap().remove("merchant");
        let rejection = process(json).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::MissingField);
        assert_eq!(rejection.key.as_deref(), Some("0b8e6d4c-1a2f-4e3d-9c5b-7a6f8e9d0c1b"));
        assert!(rejection.detail.contains("merchant"));
    }

    #[test]
    fn required_fields_are_configurable() {
        let mut json = minimal();
        json.as_object_mut().unwrap().remove("merchant");
        let mut relaxed = rules();
        relaxed.required_fields.retain(|f| f != "merchant");
        assert!(Webhook::parse(EventKind::BusinessProcess, json.to_string().as_bytes(), &relaxed).is_ok());
    }

    #[test]
    fn wrongly_typed_known_fields_are_rejected() {
        let cases = [
            ("status", serde_json::json!(3)),
            ("expiration", serde_json::json!("next tuesday")),
            ("version", serde_json::json!("4")),
            ("actions", serde_json::json!({})),
            ("actions", serde_json::json!([1])),
            ("actions", serde_json::json!([{"union": -1}])),
            ("addresses", serde_json::json!([{"value": 5}])),
        ];
        for (field, bad) in cases {
            let mut json = minimal();
            json[field] = bad.clone();
            let rejection = process(json).unwrap_err();
            assert_eq!(rejection.reason, RejectReason::InvalidField, "{field} = {bad}");
            assert!(rejection.detail.contains(field), "{}", rejection.detail);
        }
    }

    #[test]
    fn rejection_detail_never_contains_payload_values() {
        let mut json = minimal();
        json["customer"] = serde_json::json!({"secretName": "Jane Roe"});
        let rejection = process(json).unwrap_err();
        assert!(!rejection.detail.contains("Jane"), "{}", rejection.detail);
        let rejection = Webhook::parse(EventKind::BusinessProcess, b"{\"card\": 4111111111111111", &rules()).unwrap_err();
        assert!(!rejection.detail.contains("4111"), "{}", rejection.detail);
    }

    #[test]
    fn custom_key_pointer_reaches_nested_fields() {
        let mut custom = rules();
        custom.key_pointer = "/process/uuid".parse().unwrap();
        custom.required_fields.clear();
        let body = br#"{"process": {"uuid": "p-1"}}"#;
        assert_eq!(Webhook::parse(EventKind::BusinessProcess, body, &custom).unwrap().key, "p-1");
    }

    #[test]
    fn pointer_must_name_a_field() {
        assert!("".parse::<Pointer>().is_err());
        assert!("/".parse::<Pointer>().is_err());
        assert!("id".parse::<Pointer>().is_err());
    }
}
