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
