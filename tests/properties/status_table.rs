//! The README's table "What each answer means to Authvia", read at compile time: every status
//! the relay documents and the error codes each may carry. The property tests and the handler
//! fuzz target (`fuzz/`, through `#[path]`) both hold the handler to it, so an answer the README
//! does not promise, or a README row the code no longer matches, fails them.

const README: &str = include_str!("../../README.md");
const HEADING: &str = "## What each answer means to Authvia";

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    /// The statuses the row names (`404` / `405` is one row for two).
    pub statuses: Vec<u16>,
    /// Its body `code`s; empty for a success row (`—`).
    pub codes: Vec<String>,
}

/// The table's rows, in README order.
///
/// # Panics
/// The README has no such table, or a row names no status: the table was moved or reshaped,
/// and this reader must follow.
pub fn rows() -> Vec<Row> {
    let section = README
        .split(HEADING)
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no {HEADING:?} section"));
    let rows: Vec<Row> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and the |---| line
        .map(row)
        .collect();
    assert!(
        rows.len() >= 10,
        "README.md's status table has only {} rows: was it reshaped?",
        rows.len()
    );
    rows
}

fn row(line: &str) -> Row {
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    let (status_cell, code_cell) = (cells[1], cells[3]);
    let statuses: Vec<u16> = backticked(status_cell)
        .filter_map(|text| text.parse().ok())
        .collect();
    assert!(
        !statuses.is_empty(),
        "a row of README.md's status table names no status: {line}"
    );
    Row {
        statuses,
        codes: backticked(code_cell).map(str::to_owned).collect(),
    }
}

/// The `backticked` words of a cell.
fn backticked(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

/// Whether an answer with `status` and, for an error, body `code` is one the README documents.
pub fn documented(rows: &[Row], status: u16, code: Option<&str>) -> bool {
    rows.iter().any(|row| {
        row.statuses.contains(&status)
            && match code {
                None => row.codes.is_empty(),
                Some(code) => row.codes.iter().any(|documented| documented == code),
            }
    })
}
