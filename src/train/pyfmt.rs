//! Python's text forms of values, as kohya's metadata holds them: `str(v)` of ints, floats, bools and `None`,
//! `str((512, 512))` of a tuple, and `json.dumps(v)` with its defaults (`ensure_ascii=True`, separators
//! `", "` and `": "`, keys in insertion order).

use std::fmt::Write as _;

/// `str(x)` / `repr(x)` of a Python float: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in -4..16 (`0.0001`, `1600.0`), else scientific with a signed two-digit exponent
/// (`1e-05`, `2.5e+16`).
pub fn float(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exponent) {
        fixed_notation(&digits, exponent)
    } else {
        scientific_notation(&digits, exponent)
    };
    format!("{sign}{body}")
}

fn fixed_notation(digits: &str, exponent: i32) -> String {
    if exponent < 0 {
        let zeros = "0".repeat((-exponent - 1) as usize);
        return format!("0.{zeros}{digits}");
    }
    let int_len = exponent as usize + 1;
    if digits.len() <= int_len {
        let zeros = "0".repeat(int_len - digits.len());
        format!("{digits}{zeros}.0")
    } else {
        format!("{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

fn scientific_notation(digits: &str, exponent: i32) -> String {
    let (first, rest) = digits.split_at(1);
    let fraction = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{first}{fraction}e{sign}{:02}", exponent.abs())
}

/// `str(b)`: `True` / `False`.
pub fn bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

/// `str(v)` of an optional value: the value's own form, or `None`.
pub fn opt<T>(v: Option<T>, form: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "None".to_string(), form)
}

/// A JSON-able Python value (what kohya passes to `json.dumps`).
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A list or tuple.
    List(Vec<PyValue>),
    /// A dict, in insertion order.
    Dict(Vec<(String, PyValue)>),
}

impl PyValue {
    /// `json.dumps(value)` with Python's defaults.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("null"),
            PyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            PyValue::Int(i) => out.push_str(&i.to_string()),
            PyValue::Float(x) => out.push_str(&json_float(*x)),
            PyValue::Str(s) => write_json_string(s, out),
            PyValue::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            PyValue::Dict(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_json_string(key, out);
                    out.push_str(": ");
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

fn json_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        float(x)
    }
}

/// A JSON string as `json.dumps` writes it with `ensure_ascii=True`: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`,
/// other control characters and every non-ASCII character as `\uXXXX` (UTF-16 surrogate pairs above U+FFFF).
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are what CPython 3.11 prints for `str(x)`.
    #[test]
    fn floats_as_python_prints_them() {
        let cases = [
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (5e-5, "5e-05"),
            (2e-6, "2e-06"),
            (0.00015, "0.00015"),
            (1.0, "1.0"),
            (16.0, "16.0"),
            (0.5, "0.5"),
            (1600.0, "1600.0"),
            (0.0, "0.0"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.5e-7, "1.5e-07"),
            (1700000000.123456, "1700000000.123456"),
            (0.1, "0.1"),
        ];
        for (x, want) in cases {
            assert_eq!(float(x), want, "{x:e}");
        }
    }

    #[test]
    fn json_dumps_as_python() {
        let value = PyValue::Dict(vec![
            (
                "25_sks".to_string(),
                PyValue::Dict(vec![
                    ("sks woman".to_string(), PyValue::Int(3)),
                    ("café \"x\"".to_string(), PyValue::Int(1)),
                ]),
            ),
            (
                "r".to_string(),
                PyValue::List(vec![PyValue::Int(512), PyValue::Float(0.25)]),
            ),
            ("n".to_string(), PyValue::None),
            ("b".to_string(), PyValue::Bool(true)),
            ("e".to_string(), PyValue::Str("😀\n".to_string())),
        ]);
        // python3 -c 'import json; print(json.dumps({"25_sks": {"sks woman": 3, "café \"x\"": 1},
        //   "r": [512, 0.25], "n": None, "b": True, "e": "😀\n"}))'
        assert_eq!(
            value.dumps(),
            r#"{"25_sks": {"sks woman": 3, "caf\u00e9 \"x\"": 1}, "r": [512, 0.25], "n": null, "b": true, "e": "\ud83d\ude00\n"}"#
        );
    }
}
