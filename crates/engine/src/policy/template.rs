//! Path templates: `/literal/{param}/{*rest}`.

use crate::escape::normalize_segment;
use crate::vocab::SegmentPolicy;

/// One template segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A literal segment, in normalized form.
    Literal(String),
    /// `{name}`: one non-empty segment.
    Param(String),
    /// `{*name}`: the rest of the path, one segment or more.
    Rest(String),
}

/// A parsed template: its segments, with parameter names in order.
/// A path template that cannot be used, with the template quoted in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path template `{template}`{problem}")]
pub struct TemplateError {
    template: String,
    /// Starts with ` ` or `: `, so the message reads as one sentence.
    problem: String,
}

impl TemplateError {
    fn new(template: &str, problem: impl Into<String>) -> TemplateError {
        TemplateError {
            template: template.to_string(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A parsed path template.
pub struct Template {
    /// As written in the config.
    pub source: String,
    /// Its segments, in order.
    pub segments: Vec<Segment>,
}

impl Template {
    /// Parses a template. `strict_trailing_slash` keeps a trailing `/` as an empty
    /// final literal, mirroring how the normalizer treats requests.
    pub fn parse(s: &str, strict_trailing_slash: bool) -> Result<Template, TemplateError> {
        if !s.starts_with('/') {
            return Err(TemplateError::new(s, " must start with `/`"));
        }
        let body = &s[1..];
        let mut segments = Vec::new();
        if body.is_empty() {
            return Ok(Template {
                source: s.to_string(),
                segments,
            });
        }
        let parts: Vec<&str> = body.split('/').collect();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                if i == last {
                    if strict_trailing_slash {
                        segments.push(Segment::Literal(String::new()));
                    }
                    continue;
                }
                return Err(TemplateError::new(s, " has an empty segment (`//`)"));
            }
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (rest, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(TemplateError::new(
                        s,
                        format!(": parameter name `{inner}` must be letters, digits, `_` or `-`"),
                    ));
                }
                if segments
                    .iter()
                    .any(|seg| matches!(seg, Segment::Param(n) | Segment::Rest(n) if n == name))
                {
                    return Err(TemplateError::new(
                        s,
                        format!(" uses parameter `{name}` twice"),
                    ));
                }
                if rest {
                    let trailing_only = i == last || (i + 1 == last && parts[last].is_empty());
                    if !trailing_only {
                        return Err(TemplateError::new(
                            s,
                            format!(": `{{*{name}}}` must be the last segment"),
                        ));
                    }
                    segments.push(Segment::Rest(name.to_string()));
                    break;
                }
                segments.push(Segment::Param(name.to_string()));
                continue;
            }
            if part.contains('{') || part.contains('}') {
                return Err(TemplateError::new(
                    s,
                    format!(
                        ": segment `{part}` mixes text and a parameter; a parameter must be a whole segment"
                    ),
                ));
            }
            if *part == "." || *part == ".." {
                return Err(TemplateError::new(
                    s,
                    " contains a dot segment, which no normalized request has",
                ));
            }
            // A literal must be written the way the normalizer writes requests,
            // or it could never match.
            let policy = SegmentPolicy::permissive();
            match normalize_segment(part.as_bytes(), &policy) {
                Ok(n) if n == *part => segments.push(Segment::Literal(n)),
                Ok(n) => {
                    return Err(TemplateError::new(
                        s,
                        format!(": segment `{part}` is not in normalized form; write it as `{n}`"),
                    ));
                }
                Err(e) => return Err(TemplateError::new(s, format!(": {}", e.detail))),
            }
        }
        Ok(Template {
            source: s.to_string(),
            segments,
        })
    }

    /// Parameter names, in order.
    pub fn param_names(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) | Segment::Rest(n) => Some(n.clone()),
                Segment::Literal(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_params_and_rest() {
        let t = Template::parse("/tenants/{tenant}/files/{*path}", false).unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Literal("tenants".into()),
                Segment::Param("tenant".into()),
                Segment::Literal("files".into()),
                Segment::Rest("path".into()),
            ]
        );
        assert_eq!(t.param_names(), vec!["tenant", "path"]);
        assert!(Template::parse("/", false).unwrap().segments.is_empty());
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "a/b",
            "/a//b",
            "/{*rest}/x",
            "/{}",
            "/x{y}",
            "/{a}/{a}",
            "/a/../b",
            "/%61dmin",
            "/a%zz",
        ] {
            assert!(Template::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn trailing_slash_follows_policy() {
        assert_eq!(Template::parse("/a/", false).unwrap().segments.len(), 1);
        assert_eq!(Template::parse("/a/", true).unwrap().segments.len(), 2);
    }
}
