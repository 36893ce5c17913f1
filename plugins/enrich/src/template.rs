//! Route templates for `derive`: `/users/{id}` matches `/users/42` segment by segment.

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal the path's segment.
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

/// A parsed template and the text it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
}

/// The path part of a value: without a scheme and authority (`https://host:8080`), a query
/// (`?…`) or a fragment (`#…`), and without one trailing slash (except for `/` itself).
fn path_of(value: &str) -> &str {
    let mut path = value;
    if let Some(i) = path.find(['?', '#']) {
        path = &path[..i];
    }
    if let Some(i) = path.find("://") {
        let rest = &path[i + 3..];
        path = rest.find('/').map_or("/", |j| &rest[j..]);
    }
    if path.len() > 1 {
        path = path.strip_suffix('/').unwrap_or(path);
    }
    path
}

impl Template {
    /// Parses a template; `{` and `}` may only enclose a whole segment.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.is_empty() {
            return Err("empty template".into());
        }
        let segments = path_of_template(text)
            .split('/')
            .map(|seg| {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if name.is_empty() || name.contains(['{', '}']) {
                        return Err(format!("`{seg}` in `{text}` is not a `{{name}}` segment"));
                    }
                    Ok(Segment::Param)
                } else if seg.contains(['{', '}']) {
                    Err(format!(
                        "`{seg}` in `{text}`: `{{name}}` must be a whole segment"
                    ))
                } else {
                    Ok(Segment::Literal(seg.to_string()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Template {
            text: text.to_string(),
            segments,
        })
    }

    /// The template's text, the value `derive` sets.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `value` (a path or a URL) matches the template.
    pub fn matches(&self, value: &str) -> bool {
        let mut parts = path_of(value).split('/');
        for seg in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            let ok = match seg {
                Segment::Literal(l) => part == l,
                Segment::Param => !part.is_empty(),
            };
            if !ok {
                return false;
            }
        }
        parts.next().is_none()
    }
}

/// A template is normalised like a path, but never read as a URL.
fn path_of_template(text: &str) -> &str {
    if text.len() > 1 {
        text.strip_suffix('/').unwrap_or(text)
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Template {
        Template::parse(text).expect("valid template")
    }

    #[test]
    fn matches_segment_by_segment() {
        let users = t("/users/{id}");
        assert!(users.matches("/users/42"));
        assert!(users.matches("/users/42/"));
        assert!(users.matches("/users/42?expand=orders#top"));
        assert!(users.matches("https://api.example.com:8443/users/42?x=1"));
        assert!(!users.matches("/users"));
        assert!(!users.matches("/users/"));
        assert!(!users.matches("/users//"));
        assert!(!users.matches("/users/42/orders"));
        assert!(!users.matches("/Users/42"));
        assert!(!users.matches("users/42"));
        let items = t("/orders/{id}/items/{item}");
        assert!(items.matches("/orders/7/items/abc"));
        assert!(!items.matches("/orders/7/lines/abc"));
        assert!(t("/").matches("/"));
        assert!(t("/").matches("https://example.com"));
        assert!(!t("/").matches("/a"));
        assert!(t("/health/").matches("/health"));
    }

    #[test]
    fn rejects_partial_parameters() {
        for bad in [
            "",
            "/users/{}",
            "/users/id{x}",
            "/users/{id",
            "/users/{a{b}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
