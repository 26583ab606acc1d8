//! The README's tables as the unit tests read them: the flag tables, `bp-relay sign`'s table and
//! the metrics table are each held to what the program really has (clap's arguments, the
//! registered metrics), so the README cannot drift from the binary.

const README: &str = include_str!("../README.md");

/// One row of a Markdown table: its cells, trimmed, under the bold heading (`**Listeners**`)
/// that last preceded the table, if any.
#[derive(Debug)]
pub struct Row {
    pub heading: Option<String>,
    pub cells: Vec<String>,
}

impl Row {
    /// The first `backticked` word of cell `index`, if the cell has one.
    pub fn code(&self, index: usize) -> Option<&str> {
        self.cells.get(index)?.split('`').nth(1)
    }
}

/// The body rows of every table from the line starting with `from` to the next line starting
/// with `until`.
///
/// # Panics
/// Either marker is missing: the README was reshaped, and the test reading it must follow.
pub fn rows_between(from: &str, until: &str) -> Vec<Row> {
    let start = README
        .lines()
        .position(|line| line.starts_with(from))
        .unwrap_or_else(|| panic!("README.md has no line starting with {from:?}"));
    let lines: Vec<&str> = README.lines().skip(start + 1).collect();
    let end = lines
        .iter()
        .position(|line| line.starts_with(until))
        .unwrap_or_else(|| panic!("README.md has no line starting with {until:?} after {from:?}"));
    let mut heading = None;
    let mut rows = Vec::new();
    let mut previous_was_table = false;
    for line in &lines[..end] {
        let line = line.trim_start();
        if let Some(bold) = line.strip_prefix("**") {
            heading = bold.split("**").next().map(str::to_owned);
        }
        let is_table = line.starts_with('|');
        // A table's first line is its header, its second the |---| line: neither is a row.
        if is_table && previous_was_table && !line.starts_with("|---") {
            let cells = line
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned());
            rows.push(Row {
                heading: heading.clone(),
                cells: cells.collect(),
            });
        }
        previous_was_table = is_table;
    }
    rows
}
