//! AUTOMATIC1111 X/Y/Z plot value parsing (`scripts/xyz_grid.py` 1.10) and Python number formatting for labels.
//!
//! * [`split_csv`]: `csv_string_to_list_strip` = `csv.reader(StringIO(text), skipinitialspace=True)`, rows chained,
//!   every value `str.strip()`ed.
//! * [`parse_int_values`] / [`parse_float_values`]: `process_axis` for `int` and `float` axes with the regexes
//!   `re_range`, `re_range_count`, `re_range_float`, `re_range_count_float` (ported as written, including the
//!   unescaped `.` of the float ones), `range` / `np.arange` / `np.linspace` expansion, and empty values skipped.
//! * [`python_float_repr`] / [`round8`]: Python `str(round(x, 8))` as `format_value_add_label` writes floats.

use std::sync::OnceLock;

use regex::Regex;

/// A value-parsing failure: the offending value and why (the caller adds the axis name).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueError {
    pub value: String,
    pub reason: String,
}

impl ValueError {
    fn new(value: &str, reason: impl Into<String>) -> Self {
        ValueError {
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Python `csv.reader(..., skipinitialspace=True)` over the whole text, rows chained, each value stripped.
pub fn split_csv(text: &str) -> Vec<String> {
    let mut reader = CsvReader::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        reader.push(c);
    }
    reader.finish();
    reader.fields.iter().map(|f| python_strip(f)).collect()
}

#[derive(Default, PartialEq, Clone, Copy)]
enum CsvState {
    #[default]
    StartRecord,
    StartField,
    InField,
    InQuotedField,
    QuoteInQuotedField,
}

#[derive(Default)]
struct CsvReader {
    state: CsvState,
    field: String,
    fields: Vec<String>,
}

impl CsvReader {
    fn save_field(&mut self) {
        self.fields.push(std::mem::take(&mut self.field));
    }

    fn push(&mut self, c: char) {
        let newline = c == '\n' || c == '\r';
        match self.state {
            CsvState::StartRecord if newline => {}
            CsvState::StartRecord | CsvState::StartField => self.start_field(c, newline),
            CsvState::InField => match c {
                _ if newline => self.end_record(),
                ',' => {
                    self.save_field();
                    self.state = CsvState::StartField;
                }
                _ => self.field.push(c),
            },
            CsvState::InQuotedField => match c {
                '"' => self.state = CsvState::QuoteInQuotedField,
                _ => self.field.push(c),
            },
            CsvState::QuoteInQuotedField => match c {
                '"' => {
                    self.field.push('"');
                    self.state = CsvState::InQuotedField;
                }
                ',' => {
                    self.save_field();
                    self.state = CsvState::StartField;
                }
                _ if newline => self.end_record(),
                _ => {
                    self.field.push(c);
                    self.state = CsvState::InField;
                }
            },
        }
    }

    fn start_field(&mut self, c: char, newline: bool) {
        match c {
            _ if newline => self.end_record(),
            '"' => self.state = CsvState::InQuotedField,
            ' ' => self.state = CsvState::StartField,
            ',' => {
                self.save_field();
                self.state = CsvState::StartField;
            }
            _ => {
                self.field.push(c);
                self.state = CsvState::InField;
            }
        }
    }

    fn end_record(&mut self) {
        self.save_field();
        self.state = CsvState::StartRecord;
    }

    fn finish(&mut self) {
        if self.state != CsvState::StartRecord {
            self.save_field();
        }
        self.state = CsvState::StartRecord;
    }
}

/// Python `str.strip()`.
fn python_strip(text: &str) -> String {
    text.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
        .to_string()
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| {
        Regex::new(&format!("^(?:{pattern})$"))
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

fn re_range() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(
        &RE,
        r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*",
    )
}

fn re_range_count() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(
        &RE,
        r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\[(\d+)\s*])?\s*",
    )
}

fn re_range_float() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(
        &RE,
        r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\(([+-]\d+(?:.\d*)?)\s*\))?\s*",
    )
}

fn re_range_count_float() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(
        &RE,
        r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\[(\d+(?:.\d*)?)\s*])?\s*",
    )
}

/// Python `int(text)`: surrounding whitespace allowed, an optional sign directly before the digits.
pub fn python_int(text: &str) -> Result<i64, ValueError> {
    let trimmed = text.trim();
    let digits = trimmed.trim_start_matches(['+', '-']);
    let valid = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && trimmed.len() - digits.len() <= 1;
    if !valid {
        return Err(ValueError::new(
            text,
            format!("invalid literal for int() with base 10: {trimmed:?}"),
        ));
    }
    trimmed
        .parse()
        .map_err(|_| ValueError::new(text, "integer out of range"))
}

/// Python `float(text)` for decimal and exponent notation (plus `inf` / `nan`).
pub fn python_float(text: &str) -> Result<f64, ValueError> {
    let trimmed = text.trim();
    let allowed = trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'));
    match trimmed.parse::<f64>() {
        Ok(value) if allowed && !trimmed.is_empty() => Ok(value),
        _ => Err(ValueError::new(
            text,
            format!("could not convert string to float: {trimmed:?}"),
        )),
    }
}

fn group<'t>(captures: &regex::Captures<'t>, index: usize) -> Option<&'t str> {
    captures.get(index).map(|m| m.as_str())
}

/// A1111 `process_axis` for an `int` axis: ranges expanded, empty values skipped, the rest `int()`-converted.
pub fn parse_int_values(text: &str) -> Result<Vec<i64>, ValueError> {
    let mut values = Vec::new();
    for value in split_csv(text) {
        if value.trim().is_empty() {
            continue;
        }
        if let Some(c) = re_range().captures(&value) {
            let start = python_int(group(&c, 1).unwrap_or(""))?;
            let end = python_int(group(&c, 2).unwrap_or(""))? + 1;
            let step = group(&c, 3).map_or(Ok(1), python_int)?;
            values.extend(python_range(&value, start, end, step)?);
        } else if let Some(c) = re_range_count().captures(&value) {
            let start = python_int(group(&c, 1).unwrap_or(""))?;
            let end = python_int(group(&c, 2).unwrap_or(""))?;
            let count = group(&c, 3).map_or(Ok(1), python_int)?;
            let spaced = linspace(start as f64, end as f64, count_to_usize(&value, count)?);
            values.extend(spaced.into_iter().map(|x| x.trunc() as i64));
        } else {
            values.push(python_int(&value)?);
        }
    }
    Ok(values)
}

/// A1111 `process_axis` for a `float` axis: `a-b (+s)` = `np.arange(a, b + s, s)`, `a-b [n]` = `np.linspace`.
pub fn parse_float_values(text: &str) -> Result<Vec<f64>, ValueError> {
    let mut values = Vec::new();
    for value in split_csv(text) {
        if value.trim().is_empty() {
            continue;
        }
        if let Some(c) = re_range_float().captures(&value) {
            let start = python_float(group(&c, 1).unwrap_or(""))?;
            let end = python_float(group(&c, 2).unwrap_or(""))?;
            let step = group(&c, 3).map_or(Ok(1.0), python_float)?;
            values.extend(numpy_arange(&value, start, end + step, step)?);
        } else if let Some(c) = re_range_count_float().captures(&value) {
            let start = python_float(group(&c, 1).unwrap_or(""))?;
            let end = python_float(group(&c, 2).unwrap_or(""))?;
            let count = group(&c, 3).map_or(Ok(1), python_int)?;
            values.extend(linspace(start, end, count_to_usize(&value, count)?));
        } else {
            values.push(python_float(&value)?);
        }
    }
    Ok(values)
}

const MAX_RANGE_VALUES: usize = 100_000;

fn count_to_usize(value: &str, count: i64) -> Result<usize, ValueError> {
    match usize::try_from(count.max(0)) {
        Ok(n) if n <= MAX_RANGE_VALUES => Ok(n),
        _ => Err(ValueError::new(value, "too many values in range")),
    }
}

/// Python `range(start, end, step)`.
fn python_range(value: &str, start: i64, end: i64, step: i64) -> Result<Vec<i64>, ValueError> {
    if step == 0 {
        return Err(ValueError::new(value, "range() arg 3 must not be zero"));
    }
    let span = if step > 0 { end - start } else { start - end };
    let count = if span <= 0 {
        0
    } else {
        (span + step.abs() - 1) / step.abs()
    };
    let count = count_to_usize(value, count)?;
    Ok((0..count as i64).map(|i| start + i * step).collect())
}

/// `np.arange(start, stop, step)` for floats: length `ceil((stop - start) / step)`, then numpy's fill
/// (`x[0] = start`, `x[1] = start + step`, `x[i] = start + i * (x[1] - x[0])`).
fn numpy_arange(value: &str, start: f64, stop: f64, step: f64) -> Result<Vec<f64>, ValueError> {
    if step == 0.0 || !step.is_finite() {
        return Err(ValueError::new(
            value,
            "step must be a finite non-zero number",
        ));
    }
    let length = ((stop - start) / step).ceil();
    if length.is_nan() || length > MAX_RANGE_VALUES as f64 {
        return Err(ValueError::new(value, "too many values in range"));
    }
    let length = length.max(0.0) as usize;
    let second = start + step;
    let delta = second - start;
    Ok((0..length)
        .map(|i| match i {
            0 => start,
            1 => second,
            _ => start + i as f64 * delta,
        })
        .collect())
}

/// `np.linspace(start, stop, num)` (endpoint included, last value exactly `stop`).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    values[num - 1] = stop;
    values
}

/// Python `round(x, 8)`: correctly rounded to 8 decimals.
pub fn round8(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.8}").parse().unwrap_or(x)
}

/// Python `repr(float)`: shortest round-trip digits, `.0` for integral values, exponent form outside
/// `1e-4 <= |x| < 1e16` (`1e-05`, `1e+16`).
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        return python_exponent(&format!("{x:e}"));
    }
    let plain = format!("{x}");
    if plain.contains('.') {
        plain
    } else {
        format!("{plain}.0")
    }
}

fn python_exponent(rust: &str) -> String {
    let Some((mantissa, exponent)) = rust.split_once('e') else {
        return rust.to_string();
    };
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// How A1111 labels a float value: `str(round(x, 8))`.
pub fn float_label(x: f64) -> String {
    python_float_repr(round8(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_splits_quotes_and_strips() {
        assert_eq!(split_csv("a, b ,c"), vec!["a", "b", "c"]);
        assert_eq!(split_csv(r#""a, b", c"#), vec!["a, b", "c"]);
        assert_eq!(split_csv(r#""say ""hi""",x"#), vec![r#"say "hi""#, "x"]);
        assert_eq!(split_csv("a,"), vec!["a", ""]);
        assert_eq!(split_csv("a\nb,c"), vec!["a", "b", "c"]);
        assert!(split_csv("").is_empty());
        // A quote in the middle of an unquoted field is literal; text after a closing quote is kept.
        assert_eq!(split_csv(r#"a"b,"c"d"#), vec![r#"a"b"#, "cd"]);
    }

    /// Every case of `scripts/grid_values_reference.py` (A1111's own code run on Python + numpy).
    #[test]
    fn values_and_labels_match_the_a1111_reference() {
        let reference = include_str!("../../tests/fixtures/grid/values.jsonl");
        for line in reference.lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let input = case["input"].as_str().unwrap();
            let is_int = case["type"] == "int";
            let parsed: Result<Vec<f64>, ValueError> = if is_int {
                parse_int_values(input).map(|v| v.into_iter().map(|x| x as f64).collect())
            } else {
                parse_float_values(input)
            };
            if case.get("error").is_some() {
                assert!(parsed.is_err(), "{input:?} should fail, got {parsed:?}");
                continue;
            }
            let parsed = parsed.unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
            let expected: Vec<f64> = case["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(parsed, expected, "values of {input:?}");
            let labels: Vec<String> = parsed
                .iter()
                .map(|x| {
                    if is_int {
                        (*x as i64).to_string()
                    } else {
                        float_label(*x)
                    }
                })
                .collect();
            assert_eq!(
                labels,
                case["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap())
                    .collect::<Vec<_>>(),
                "labels of {input:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_value() {
        let err = parse_int_values("1, x").unwrap_err();
        assert_eq!(err.value, "x");
        // `int("- 5")` fails in Python although the range regex accepts it.
        assert!(parse_int_values("- 5-3").is_err());
        assert!(parse_int_values("1-5 (+0)").is_err());
        assert!(parse_float_values("abc").is_err());
    }

    #[test]
    fn float_labels_match_python_str() {
        assert_eq!(float_label(7.0), "7.0");
        assert_eq!(float_label(0.6000000000000001), "0.6");
        assert_eq!(float_label(1e-5), "1e-05");
        assert_eq!(float_label(2.5e16), "2.5e+16");
        assert_eq!(float_label(123.456), "123.456");
        assert_eq!(float_label(1.123456789), "1.12345679");
    }
}
