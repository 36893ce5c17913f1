//! The plugin's configuration, parsed and checked once in `init` into the steps the plugin
//! runs.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde::de::{DeserializeOwned, Error as _};
use sluice_sdk::Error;
use sluice_sdk::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_sdk::serde_json::{self, Value};

use crate::template::Template;

/// Which attributes a step works on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The resource's attributes (once per resource, shared by its records).
    Resource,
    /// The span's, log record's or metric data point's own attributes.
    #[default]
    Record,
}

/// An attribute value from the config: a string, an integer, a float or a boolean.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigValue(pub AnyValue);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let value = match &v {
            Value::String(s) => any_value::Value::StringValue(s.clone()),
            Value::Bool(b) => any_value::Value::BoolValue(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => any_value::Value::IntValue(i),
                (None, Some(f)) if n.is_f64() => any_value::Value::DoubleValue(f),
                _ => {
                    return Err(D::Error::custom(format!(
                        "the number {n} does not fit a 64-bit signed integer"
                    )));
                }
            },
            _ => {
                return Err(D::Error::custom(format!(
                    "invalid value {v}: expected a string, a number or a boolean"
                )));
            }
        };
        Ok(ConfigValue(AnyValue { value: Some(value) }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionKind {
    Insert,
    Update,
    Upsert,
    Delete,
    Copy,
    Rename,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    action: ActionKind,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, deserialize_with = "present")]
    value: Option<ConfigValue>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerive {
    from: String,
    to: String,
    templates: Vec<String>,
    #[serde(default)]
    target: Target,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookup {
    key: String,
    #[serde(default)]
    table: BTreeMap<String, BTreeMap<String, ConfigValue>>,
    #[serde(default)]
    default: BTreeMap<String, ConfigValue>,
}

/// An optional field that, when present, must hold a value (`null` is an error, not absence).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A list, or a single entry standing for a list of one.
#[derive(Debug)]
struct OneOrMany<T>(Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    serde_json::from_value(item)
                        .map_err(|e| D::Error::custom(format!("[{i}]: {e}")))
                })
                .collect::<Result<Vec<T>, _>>()
                .map(OneOrMany),
            single => serde_json::from_value(single)
                .map(|one| OneOrMany(vec![one]))
                .map_err(D::Error::custom),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    attributes: Vec<RawAction>,
    #[serde(default)]
    derive: OneOrMany<RawDerive>,
    #[serde(default)]
    lookup: OneOrMany<RawLookup>,
}

/// One `attributes` action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Insert { key: String, value: AnyValue },
    Update { key: String, value: AnyValue },
    Upsert { key: String, value: AnyValue },
    Delete { key: String },
    Copy { from: String, to: String },
    Rename { from: String, to: String },
}

/// One `derive` entry.
#[derive(Debug, Clone)]
pub struct Derive {
    pub from: String,
    pub to: String,
    pub templates: Vec<Template>,
}

/// One `lookup` entry.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub key: String,
    pub table: HashMap<String, Vec<KeyValue>>,
    pub default: Vec<KeyValue>,
}

/// What runs on one kind of attributes, in this order: derive, lookup, attributes.
#[derive(Debug, Clone, Default)]
pub struct Steps {
    pub derive: Vec<Derive>,
    pub lookup: Vec<Lookup>,
    pub actions: Vec<Action>,
}

impl Steps {
    pub fn is_empty(&self) -> bool {
        self.derive.is_empty() && self.lookup.is_empty() && self.actions.is_empty()
    }
}

/// The checked configuration: the steps for resources and for records.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub resource: Steps,
    pub record: Steps,
}

fn attributes_of(map: BTreeMap<String, ConfigValue>) -> Vec<KeyValue> {
    map.into_iter()
        .map(|(key, ConfigValue(value))| KeyValue {
            key,
            value: Some(value),
            ..Default::default()
        })
        .collect()
}

impl RawAction {
    fn compile(self) -> Result<(Target, Action), String> {
        let kind = self.action;
        let name = format!("{kind:?}").to_lowercase();
        let keyed = matches!(
            kind,
            ActionKind::Insert | ActionKind::Update | ActionKind::Upsert | ActionKind::Delete
        );
        if keyed && (self.from.is_some() || self.to.is_some()) {
            return Err(format!("`{name}` takes `key`, not `from`/`to`"));
        }
        if !keyed && (self.key.is_some() || self.value.is_some()) {
            return Err(format!("`{name}` takes `from` and `to`, not `key`/`value`"));
        }
        if kind == ActionKind::Delete && self.value.is_some() {
            return Err("`delete` takes no `value`".into());
        }
        let non_empty = |field: &str, v: Option<String>| match v {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(format!("`{name}`: `{field}` must not be empty")),
            None => Err(format!("`{name}` needs `{field}`")),
        };
        let action = match kind {
            ActionKind::Delete => Action::Delete {
                key: non_empty("key", self.key)?,
            },
            ActionKind::Insert | ActionKind::Update | ActionKind::Upsert => {
                let key = non_empty("key", self.key)?;
                let value = self
                    .value
                    .ok_or_else(|| format!("`{name}` needs `value`"))?
                    .0;
                match kind {
                    ActionKind::Insert => Action::Insert { key, value },
                    ActionKind::Update => Action::Update { key, value },
                    _ => Action::Upsert { key, value },
                }
            }
            ActionKind::Copy | ActionKind::Rename => {
                let from = non_empty("from", self.from)?;
                let to = non_empty("to", self.to)?;
                if from == to {
                    return Err(format!("`{name}`: `from` and `to` are both `{from}`"));
                }
                if kind == ActionKind::Copy {
                    Action::Copy { from, to }
                } else {
                    Action::Rename { from, to }
                }
            }
        };
        Ok((self.target, action))
    }
}

impl RawDerive {
    fn compile(self) -> Result<(Target, Derive), String> {
        if self.from.is_empty() || self.to.is_empty() {
            return Err("`from` and `to` must not be empty".into());
        }
        if self.from == self.to {
            return Err(format!("`from` and `to` are both `{}`", self.from));
        }
        if self.templates.is_empty() {
            return Err("`templates` is empty".into());
        }
        let templates = self
            .templates
            .iter()
            .enumerate()
            .map(|(i, t)| Template::parse(t).map_err(|e| format!("templates[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok((
            self.target,
            Derive {
                from: self.from,
                to: self.to,
                templates,
            },
        ))
    }
}

impl RawLookup {
    fn compile(self) -> Result<Lookup, String> {
        if self.key.is_empty() {
            return Err("`key` must not be empty".into());
        }
        if self.table.is_empty() && self.default.is_empty() {
            return Err("needs a `table`, a `default`, or both".into());
        }
        Ok(Lookup {
            key: self.key,
            table: self
                .table
                .into_iter()
                .map(|(k, attrs)| (k, attributes_of(attrs)))
                .collect(),
            default: attributes_of(self.default),
        })
    }
}

impl Config {
    /// Parses and checks the JSON of the `config:` block.
    pub fn parse(json: &str) -> Result<Config, Error> {
        let value: Value = sluice_sdk::parse_config(json)?;
        if !value.is_object() {
            return Err(Error::Config(format!(
                "expected a mapping of options, got {value}"
            )));
        }
        let raw: RawConfig =
            serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
        let mut config = Config::default();
        for (i, a) in raw.attributes.into_iter().enumerate() {
            let (target, action) = a
                .compile()
                .map_err(|m| Error::Config(format!("attributes[{i}]: {m}")))?;
            config.steps(target).actions.push(action);
        }
        for (i, d) in raw.derive.0.into_iter().enumerate() {
            let (target, derive) = d
                .compile()
                .map_err(|m| Error::Config(format!("derive[{i}]: {m}")))?;
            config.steps(target).derive.push(derive);
        }
        for (i, l) in raw.lookup.0.into_iter().enumerate() {
            let lookup = l
                .compile()
                .map_err(|m| Error::Config(format!("lookup[{i}]: {m}")))?;
            config.resource.lookup.push(lookup);
        }
        Ok(config)
    }

    fn steps(&mut self, target: Target) -> &mut Steps {
        match target {
            Target::Resource => &mut self.resource,
            Target::Record => &mut self.record,
        }
    }
}
