//! A borrowed view of a JSON document: objects as lists of (name, raw value) pairs, values left
//! as unparsed text until a rule asks for them. Parsing a delivery this way allocates a few
//! small vectors instead of a tree of strings, and skips what no rule looks at.

use std::{borrow::Cow, fmt};

use serde::{
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};
use serde_json::value::RawValue;

use super::Pointer;

/// One JSON object's members, in document order, values unparsed.
pub(super) struct Object<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// The object in `raw`, or `None` when `raw` is another kind of value.
    pub(super) fn parse(raw: &'a RawValue) -> Option<Object<'a>> {
        if kind(raw) != Kind::Object {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// The top-level object of a whole document, in one pass that also checks every byte of it
    /// is JSON (each member's value is scanned once, as the raw value it is kept as).
    ///
    /// # Errors
    /// [`NotAnObject`](Document::NotAnObject) for valid JSON of another kind, else
    /// [`NotJson`](Document::NotJson) with serde_json's reason.
    pub(super) fn document(body: &'a [u8]) -> Result<Object<'a>, Document> {
        match serde_json::from_slice(body) {
            Ok(object) => Ok(object),
            // A type mismatch is found at the first value, before the rest is read: whether the
            // rest is JSON takes the full check (a body that is not an object is rare).
            Err(error) if error.is_data() => match serde_json::from_slice::<&RawValue>(body) {
                Ok(_) => Err(Document::NotAnObject),
                Err(error) => Err(Document::NotJson(error)),
            },
            Err(error) => Err(Document::NotJson(error)),
        }
    }

    /// The member called `name`; with duplicates, the last (as most JSON readers do).
    pub(super) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(member, _)| member == name)
            .map(|(_, value)| *value)
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Why a body has no top-level object.
#[derive(Debug)]
pub(super) enum Document {
    /// The body is not JSON.
    NotJson(serde_json::Error),
    /// The body is JSON, but not an object.
    NotAnObject,
}

/// The items of the array in `raw`, each the object it is or `None` for another kind of value,
/// read in one pass; `None` when `raw` is not an array.
pub(super) fn objects<'a>(raw: &'a RawValue) -> Option<Vec<Option<Object<'a>>>> {
    if kind(raw) != Kind::Array {
        return None;
    }
    let items: Vec<Item<'a>> = serde_json::from_str(raw.get()).ok()?;
    Some(items.into_iter().map(|item| item.0).collect())
}

/// The elements of the array in `raw`, unparsed, or `None` for another kind of value.
pub(super) fn array(raw: &RawValue) -> Option<Vec<&RawValue>> {
    if kind(raw) != Kind::Array {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The string in `raw`, unescaped (borrowed when it has no escapes), or `None`.
pub(super) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    if kind(raw) != Kind::String {
        return None;
    }
    serde_json::from_str::<Text<'_>>(raw.get())
        .ok()
        .map(|text| text.0)
}

/// What kind of JSON value `raw` holds, from its first character (serde_json has checked the
/// document is valid, so that is enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

pub(super) fn kind(raw: &RawValue) -> Kind {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') | None => Kind::Null,
        Some(_) => Kind::Number,
    }
}

impl<'a> Object<'a> {
    /// The value at `pointer` (RFC 6901) below this object, if there is one.
    pub(super) fn at(&self, pointer: &Pointer) -> Option<&'a RawValue> {
        let mut tokens = pointer.as_str().split('/').skip(1).map(unescape);
        let first = self.get(&tokens.next()?)?;
        descend(first, tokens)
    }
}

/// The value at `pointer` (RFC 6901) below `root`, if there is one.
#[cfg(test)]
fn at<'a>(root: &'a RawValue, pointer: &Pointer) -> Option<&'a RawValue> {
    descend(root, pointer.as_str().split('/').skip(1).map(unescape))
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

fn descend<'a, 't>(
    root: &'a RawValue,
    tokens: impl Iterator<Item = Cow<'t, str>>,
) -> Option<&'a RawValue> {
    let mut current = root;
    for token in tokens {
        current = match kind(current) {
            Kind::Object => Object::parse(current)?.get(&token)?,
            Kind::Array => *array(current)?.get(array_index(&token)?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// An array index token: decimal digits without a leading zero (RFC 6901).
fn array_index(token: &str) -> Option<usize> {
    let canonical =
        token == "0" || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit()));
    if canonical {
        token.parse().ok()
    } else {
        None
    }
}

/// A string that borrows from the document when it can.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Text(name)) = map.next_key()? {
            members.push((name, map.next_value()?));
        }
        Ok(Object { members })
    }
}

/// An array item: the object it is, or `None` for a value of another kind (read and skipped).
struct Item<'a>(Option<Object<'a>>);

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
        ObjectVisitor
            .visit_map(map)
            .map(|object| Item(Some(object)))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Item(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Item(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Item(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Item(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Item(None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Item(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn pointers_reach_into_objects_and_arrays_with_escapes() {
        let doc =
            raw(r#"{"a": {"b/c": [10, {"d~e": "x\"y"}]}, "a": {"b/c": [1, {"d~e": "last"}]}}"#);
        let pointer = |text: &str| text.parse::<Pointer>().unwrap();
        assert_eq!(
            string(at(doc, &pointer("/a/b~1c/1/d~0e")).unwrap()).unwrap(),
            "last",
            "the last duplicate wins"
        );
        assert_eq!(at(doc, &pointer("/a/b~1c/0")).unwrap().get(), "1");
        assert!(
            at(doc, &pointer("/a/b~1c/01")).is_none(),
            "no leading zeros"
        );
        assert!(at(doc, &pointer("/a/missing")).is_none());
        assert!(
            at(doc, &pointer("/a/b~1c/0/x")).is_none(),
            "no member of a number"
        );
    }

    #[test]
    fn strings_are_unescaped_and_borrowed_when_plain() {
        assert!(matches!(
            string(raw(r#""plain""#)),
            Some(Cow::Borrowed("plain"))
        ));
        assert_eq!(string(raw(r#""tab\there""#)).unwrap(), "tab\there");
        assert!(string(raw("42")).is_none());
    }

    #[test]
    fn kinds_are_read_from_the_first_character() {
        for (text, expected) in [
            ("null", Kind::Null),
            ("true", Kind::Bool),
            ("-1.5", Kind::Number),
            ("\"s\"", Kind::String),
            ("[]", Kind::Array),
            ("{}", Kind::Object),
        ] {
            assert_eq!(kind(raw(text)), expected, "{text}");
        }
    }
}
