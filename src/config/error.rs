//! Config errors that point at the file, line and column, say what is wrong
//! and say how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A position in the config file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl Pos {
    /// The position of byte offset `offset` in `text`.
    pub fn of(text: &str, offset: usize) -> Pos {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Pos { line, col }
    }
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the operator named it.
    pub file: PathBuf,
    /// Where in the file, when the problem has a place.
    pub pos: Option<Pos>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is more to say than the message.
    pub hint: Option<String>,
    /// The offending source line, for display.
    pub snippet: Option<String>,
}

impl ConfigError {
    /// An error about the file as a whole (unreadable, empty).
    pub fn whole(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            pos: None,
            message: message.into(),
            hint: None,
            snippet: None,
        }
    }

    /// An error at a byte span of `text`.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let pos = Pos::of(text, span.start);
        let snippet = text.lines().nth(pos.line - 1).map(str::to_owned);
        ConfigError {
            file: file.to_path_buf(),
            pos: Some(pos),
            message: message.into(),
            hint: None,
            snippet,
        }
    }

    /// Adds a hint on how to fix the problem.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.pos {
            write!(f, ":{}:{}", pos.line, pos.col)?;
        }
        write!(f, ": {}", self.message)?;
        if let (Some(pos), Some(snippet)) = (self.pos, &self.snippet) {
            let pad = " ".repeat(pos.col.saturating_sub(1));
            write!(f, "\n    | {snippet}\n    | {pad}^")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(Pos::of(text, 0), Pos { line: 1, col: 1 });
        assert_eq!(Pos::of(text, 6), Pos { line: 2, col: 1 });
        assert_eq!(Pos::of(text, 11), Pos { line: 2, col: 6 });
    }

    #[test]
    fn display_names_file_line_column_and_hint() {
        let text = "x = 1\ny = nope\n";
        let e = ConfigError::at(Path::new("c.toml"), text, 10..14, "bad value").hint("write 2");
        let shown = e.to_string();
        assert!(shown.starts_with("c.toml:2:5: bad value"), "{shown}");
        assert!(shown.contains("hint: write 2"), "{shown}");
    }
}
