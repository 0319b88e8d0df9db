//! One module per subsystem: `maculactl <subsystem> <verb>`.

pub mod card;
pub mod client;
pub mod dashboard;
pub mod firewall;
pub mod mesh;
pub mod node;
pub mod overlay;
pub mod proofs;
pub mod realm;
pub mod s3;
pub mod storage;
pub mod update;
pub mod uplinks;

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

use crate::exit::CliError;

/// An `a{sv}` map as D-Bus status methods return it.
pub type VarMap = HashMap<String, OwnedValue>;

/// Prints `value` as pretty JSON on stdout (the `--json` output of every command).
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Other(format!("cannot format JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Converts an `a{sv}` map to a JSON object.
pub fn map_to_json(map: &VarMap) -> serde_json::Map<String, serde_json::Value> {
    map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

/// A string entry of an `a{sv}` map, or `""` when absent.
pub fn get_str(map: &VarMap, key: &str) -> String {
    map.get(key)
        .and_then(|v| <&str>::try_from(v).ok().map(str::to_owned))
        .unwrap_or_default()
}

/// An unsigned entry of an `a{sv}` map, or 0 when absent.
pub fn get_u64(map: &VarMap, key: &str) -> u64 {
    map.get(key)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// Converts a D-Bus value from an `a{sv}` map to JSON (strings, numbers, booleans, arrays, maps).
pub fn to_json(v: &OwnedValue) -> serde_json::Value {
    value_to_json(v)
}

fn value_to_json(v: &Value<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Bool(b) => J::Bool(*b),
        Value::U8(n) => J::from(*n),
        Value::U16(n) => J::from(*n),
        Value::U32(n) => J::from(*n),
        Value::U64(n) => J::from(*n),
        Value::I16(n) => J::from(*n),
        Value::I32(n) => J::from(*n),
        Value::I64(n) => J::from(*n),
        Value::F64(n) => J::from(*n),
        Value::Str(s) => J::String(s.to_string()),
        Value::ObjectPath(p) => J::String(p.to_string()),
        Value::Signature(s) => J::String(s.to_string()),
        Value::Value(inner) => value_to_json(inner),
        Value::Array(a) => J::Array(a.iter().map(value_to_json).collect()),
        Value::Dict(d) => J::Object(
            d.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        other => value_to_json(other).to_string(),
                    };
                    (key, value_to_json(v))
                })
                .collect(),
        ),
        Value::Structure(s) => J::Array(s.fields().iter().map(value_to_json).collect()),
        other => J::String(format!("{other:?}")),
    }
}
