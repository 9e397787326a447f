//! Prometheus text exposition format: parsing a `/metrics` scrape.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped).
/// Panics on a malformed sample line: writ's exposition must be parseable.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("malformed metrics line: {l:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices().peekable();
        let base = 1;
        let end;
        loop {
            // skip whitespace and commas
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(i, c) = chars.peek()?;
            if c == '}' {
                end = Some(base + i + 1);
                break;
            }
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(c);
                chars.next();
            }
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.next()?.1 != '=' {
                return None;
            }
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        }
        rest = &rest[end?..];
    }
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Sum of the values of every `name` sample whose labels include all of `labels` (any order;
/// other labels ignored). `None` when no sample matches.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = parse_metrics(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    if matching.is_empty() {
        None
    } else {
        Some(matching.iter().sum())
    }
}

/// The `# TYPE` declared for a metric family.
pub fn metric_type(text: &str, family: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("# TYPE ")?;
        let mut it = rest.split_whitespace();
        (it.next()? == family).then(|| it.next().unwrap_or("").to_string())
    })
}

/// Every sample of `name`.
pub fn metric_samples(text: &str, name: &str) -> Vec<Sample> {
    parse_metrics(text)
        .into_iter()
        .filter(|s| s.name == name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parser_handles_labels_in_any_order_and_escapes() {
        let text = "# HELP x y\n# TYPE writ_requests_total counter\n\
            writ_requests_total{reason=\"allowed\",action=\"a\",decision=\"allow\"} 3\n\
            writ_requests_total{action=\"a\", decision=\"deny\", reason=\"no_token\"} 2 1700000000\n\
            writ_build_info{version=\"0.1.0\"} 1\n\
            weird{l=\"a\\\"b\\\\c\"} +Inf\n\
            plain 4.5e0\n";
        assert_eq!(
            metric_value(
                text,
                "writ_requests_total",
                &[
                    ("action", "a"),
                    ("decision", "allow"),
                    ("reason", "allowed")
                ]
            ),
            Some(3.0)
        );
        assert_eq!(
            metric_value(text, "writ_requests_total", &[("action", "a")]),
            Some(5.0)
        );
        assert_eq!(
            metric_value(text, "writ_requests_total", &[("action", "b")]),
            None
        );
        assert_eq!(
            metric_value(text, "weird", &[("l", "a\"b\\c")]),
            Some(f64::INFINITY)
        );
        assert_eq!(metric_value(text, "plain", &[]), Some(4.5));
        assert_eq!(
            metric_type(text, "writ_requests_total").as_deref(),
            Some("counter")
        );
    }
}
