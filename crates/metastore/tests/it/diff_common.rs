//! Helpers shared by the differential tests (etcdctl against MetaStore and
//! against Debian's etcd): normalising what etcdctl printed so two servers'
//! outputs can be compared.

/// An etcdctl run, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Norm {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: Vec<String>,
}

/// etcdctl's stderr, line by line: its client-side retry warnings reduced to
/// the gRPC error they carry, blank and repeated lines dropped.
pub fn stderr_lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let line = if line.starts_with("{\"level\":") {
            format!("warn: {}", json_string_field(line, "error").unwrap_or_else(|| line.to_string()))
        } else {
            line.to_string()
        };
        if out.last() != Some(&line) {
            out.push(line);
        }
    }
    out
}

/// The value of a string field `"key":"..."` in a one-line JSON object.
pub fn json_string_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// Applies `f` to every line, keeping line endings.
pub fn map_lines(s: &str, mut f: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&f(body));
        out.push_str(nl);
    }
    out
}

/// Rewrites the value of every JSON `"key":` in `s`. `f` gets the value as
/// printed (a string with its quotes, or a bare number or word) and returns
/// its replacement, or `None` to keep it.
pub fn map_json_values(s: &str, key: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let pat = format!("\"{key}\":");
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(&pat) {
        let (head, tail) = rest.split_at(i + pat.len());
        out.push_str(head);
        let len = match tail.strip_prefix('"') {
            Some(after) => after.find('"').map_or(0, |j| j + 2),
            None => tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.')).unwrap_or(tail.len()),
        };
        match (len > 0).then(|| f(&tail[..len])).flatten() {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(&tail[..len]),
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

#[test]
fn map_json_values_rewrites_strings_numbers_and_keeps_what_it_is_told_to() {
    let s = r#"{"id":12,"name":"a b","ttl":-1,"flag":true,"id":"x"}"#;
    let masked = map_json_values(s, "id", |_| Some("*".into()));
    assert_eq!(masked, r#"{"id":*,"name":"a b","ttl":-1,"flag":true,"id":*}"#);
    let numbers_only = map_json_values(s, "id", |v| (!v.starts_with('"')).then(|| "0".into()));
    assert_eq!(numbers_only, r#"{"id":0,"name":"a b","ttl":-1,"flag":true,"id":"x"}"#);
    assert_eq!(map_json_values(s, "ttl", |v| Some(format!("[{v}]"))), s.replace("-1", "[-1]"));
    assert_eq!(map_json_values(r#"{"name":"open"#, "name", |_| Some("*".into())), r#"{"name":"open"#);
}
