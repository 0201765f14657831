//! What each op accepts: its params, their types, which are required.

use serde_json::Value;

/// The type a param's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any number.
    Number,
    /// A whole number of at least 0.
    Count,
    /// `true` or `false`.
    Bool,
    /// Any text.
    Text,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A list of texts, or one text (a list of one).
    Texts,
    /// A list of these words, or one of them.
    Choices(&'static [&'static str]),
    /// A list of `[x, y]` pairs of numbers.
    Points,
}

impl ParamType {
    /// Whether `v` has this type.
    pub fn accepts(self, v: &Value) -> bool {
        let word = |v: &Value, ws: &[&str]| v.as_str().is_some_and(|s| ws.contains(&s));
        match self {
            ParamType::Number => v.is_number(),
            ParamType::Count => v.is_u64(),
            ParamType::Bool => v.is_boolean(),
            ParamType::Text => v.is_string(),
            ParamType::Choice(ws) => word(v, ws),
            ParamType::Texts => {
                v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }
            ParamType::Choices(ws) => {
                word(v, ws) || v.as_array().is_some_and(|a| a.iter().all(|x| word(x, ws)))
            }
            ParamType::Points => v.as_array().is_some_and(|a| {
                a.iter().all(|q| {
                    q.as_array()
                        .is_some_and(|xy| xy.len() == 2 && xy.iter().all(Value::is_number))
                })
            }),
        }
    }

    /// What a value of this type looks like, for an error.
    pub fn expected(self) -> String {
        let words = |ws: &[&str]| ws.join(", ");
        match self {
            ParamType::Number => "a number".to_owned(),
            ParamType::Count => "a whole number, 0 or more".to_owned(),
            ParamType::Bool => "true or false".to_owned(),
            ParamType::Text => "a text".to_owned(),
            ParamType::Choice(ws) => format!("one of {}", words(ws)),
            ParamType::Texts => "a text or a list of texts".to_owned(),
            ParamType::Choices(ws) => format!("one or a list of {}", words(ws)),
            ParamType::Points => "a list of [x, y] pairs, e.g. [[0, 0], [1, 2], [2, 0]]".to_owned(),
        }
    }
}

/// One param of an op.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// Whether a step must give it (most have defaults that fit the step before).
    pub required: bool,
}

/// One op: its name, other names it answers to, and its params.
#[derive(Debug, Clone, Copy)]
pub struct OpSpec {
    /// Its name in pipelines.
    pub name: &'static str,
    /// Other names (the seed's spellings).
    pub aliases: &'static [&'static str],
    /// Its params.
    pub params: &'static [ParamSpec],
}

impl OpSpec {
    /// The param named `name`, if the op has one.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}
