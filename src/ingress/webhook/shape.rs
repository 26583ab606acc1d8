//! The fields the upstream contract names (`docs/authvia-webhooks.md`) and the shape each must
//! have. Which fields are required is configuration; the shapes of those present are checked
//! here. Absent optional fields and `null` always pass, and so do fields not listed here.

use serde_json::value::RawValue;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::json::{self, Kind, Object};

/// What a known field must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    String,
    /// An RFC 3339 date-time string.
    DateTime,
    Number,
    /// A non-negative integer.
    Integer,
    Object,
    /// An array whose items are objects with these known fields.
    ArrayOf(&'static [Field]),
}

pub(super) type Field = (&'static str, Shape);

pub(super) const BUSINESS_PROCESS: &[Field] = &[
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

pub(super) const ACTION: &[Field] = &[
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
pub(super) struct Mismatch {
    // Innermost segment first.
    reversed_path: Vec<String>,
    expected: &'static str,
}

impl Mismatch {
    fn at(mut self, segment: impl ToString) -> Self {
        self.reversed_path.push(segment.to_string());
        self
    }

    /// Names the field and what it should be, never its value.
    pub(super) fn detail(&self) -> String {
        let path: String = self
            .reversed_path
            .iter()
            .rev()
            .map(|segment| format!("/{segment}"))
            .collect();
        format!("{path} is not {}", self.expected)
    }
}

/// Checks every known field present in `object`.
pub(super) fn check_fields(object: &Object<'_>, fields: &[Field]) -> Result<(), Mismatch> {
    for (name, shape) in fields {
        if let Some(value) = object.get(name) {
            check_shape(value, *shape).map_err(|mismatch| mismatch.at(name))?;
        }
    }
    Ok(())
}

fn check_shape(value: &RawValue, shape: Shape) -> Result<(), Mismatch> {
    let kind = json::kind(value);
    let fits = match shape {
        _ if kind == Kind::Null => true,
        Shape::String => kind == Kind::String,
        Shape::DateTime => {
            json::string(value).is_some_and(|text| OffsetDateTime::parse(&text, &Rfc3339).is_ok())
        }
        Shape::Number => kind == Kind::Number,
        Shape::Integer => kind == Kind::Number && serde_json::from_str::<u64>(value.get()).is_ok(),
        Shape::Object => kind == Kind::Object,
        Shape::ArrayOf(fields) => return check_items(value, fields),
    };
    if fits {
        Ok(())
    } else {
        Err(Mismatch {
            reversed_path: Vec::new(),
            expected: expected(shape),
        })
    }
}

fn check_items(value: &RawValue, fields: &[Field]) -> Result<(), Mismatch> {
    let Some(items) = json::objects(value) else {
        return Err(Mismatch {
            reversed_path: Vec::new(),
            expected: "an array",
        });
    };
    for (index, item) in items.into_iter().enumerate() {
        let Some(object) = item else {
            return Err(Mismatch {
                reversed_path: vec![index.to_string()],
                expected: "an object",
            });
        };
        check_fields(&object, fields).map_err(|mismatch| mismatch.at(index))?;
    }
    Ok(())
}

fn expected(shape: Shape) -> &'static str {
    match shape {
        Shape::String => "a string",
        Shape::DateTime => "an RFC 3339 date-time",
        Shape::Number => "a number",
        Shape::Integer => "a non-negative integer",
        Shape::Object => "an object",
        Shape::ArrayOf(_) => "an array",
    }
}
