//! Diagnostics: every configuration problem, located at `file:line:column` with the field path.

use std::fmt;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration can still be used.
    Warning,
    /// The configuration is rejected.
    Error,
}

/// A position in a YAML file (1-based line and column; 0 when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Loc {
    /// 1-based line.
    pub line: u64,
    /// 1-based column, in characters.
    pub column: u64,
}

impl Loc {
    /// A location at `line:column`.
    pub const fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }

    /// Whether the location is known.
    pub const fn is_known(&self) -> bool {
        self.line > 0
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as given by the user.
    pub file: String,
    /// Where in the file.
    pub loc: Loc,
    /// The field path, e.g. `silver.events.expectations.event_id_present.action`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, e.g. "did you mean `key`?".
    pub help: Option<String>,
    /// The source line the location points at, for rendering.
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// An error at `loc`.
    pub fn error(loc: Loc, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: String::new(),
            loc,
            path: path.into(),
            message: message.into(),
            help: None,
            source_line: None,
        }
    }

    /// A warning at `loc`.
    pub fn warning(loc: Loc, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(loc, path, message)
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a hint when there is one.
    #[must_use]
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// Fills in the file name and the source line from the file's text.
    pub(crate) fn attach_source(&mut self, file: &str, text: &str) {
        self.file = file.to_string();
        if self.loc.is_known() {
            self.source_line = text
                .lines()
                .nth(usize::try_from(self.loc.line - 1).unwrap_or(usize::MAX))
                .map(str::to_string);
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.loc.is_known() {
            write!(f, "{}:{}:{}: ", self.file, self.loc.line, self.loc.column)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        write!(f, "{severity}: {}", self.message)?;
        if !self.path.is_empty() {
            write!(f, " (at `{}`)", self.path)?;
        }
        if let Some(line) = &self.source_line {
            let number = self.loc.line.to_string();
            let pad = " ".repeat(number.len());
            let caret_pad: String = line
                .chars()
                .take(usize::try_from(self.loc.column.saturating_sub(1)).unwrap_or(0))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n {pad} |\n {number} | {line}\n {pad} | {caret_pad}^")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// Every diagnostic of one load, errors first, each group in file order.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// Sorts by severity (errors first), then position, and removes exact repeats.
    pub(crate) fn normalize(&mut self) {
        self.0.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.loc.cmp(&b.loc))
                .then(a.message.cmp(&b.message))
        });
        self.0
            .dedup_by(|a, b| a.loc == b.loc && a.message == b.message && a.path == b.path);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        if errors > 0 {
            write!(
                f,
                "\n{errors} error{}{}",
                plural(errors),
                if warnings > 0 {
                    format!(", {warnings} warning{}", plural(warnings))
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    // Fewest edits first (a swapped pair counts as one); ties go to the more similar prefix.
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(word, c),
                -strsim::jaro_winkler(word, c),
                c,
            )
        })
        .filter(|(distance, _, _)| *distance <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, _, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("kye", ["key", "keep", "columns"]).as_deref(),
            Some("did you mean `key`?")
        );
        assert_eq!(did_you_mean("zzz", ["key", "columns"]), None);
    }

    #[test]
    fn renders_caret_under_column() {
        let mut d = Diagnostic::error(Loc::new(2, 5), "silver.events", "unknown field `kee`")
            .with_help("did you mean `key`?");
        d.attach_source("layers.yaml", "silver:\n    kee: [x]\n");
        assert_eq!(
            d.to_string(),
            "layers.yaml:2:5: error: unknown field `kee` (at `silver.events`)\n   |\n 2 |     kee: [x]\n   |     ^\n  = help: did you mean `key`?"
        );
    }
}
