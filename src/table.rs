//! Tables for reports, pure: plain text for terminals (first column left-aligned, the others
//! right-aligned, a dashed rule under the header) and GitHub-flavoured Markdown.

use std::fmt::Write;

/// A plain-text table.
pub fn text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            if i == 0 {
                s.push_str(cell);
                s.push_str(&pad);
            } else {
                s.push_str("  ");
                s.push_str(&pad);
                s.push_str(cell);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out.push_str(&line(
        &widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>(),
    ));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// A Markdown table, numbers right-aligned; `|` in cells is escaped.
pub fn markdown(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|", headers.join(" | "));
    for i in 0..headers.len() {
        out.push_str(if i == 0 { "---|" } else { "---:|" });
    }
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_markdown() {
        let rows = [
            vec!["x".to_string(), "1".into()],
            vec!["long".into(), "22".into()],
        ];
        assert_eq!(
            text(&["a", "bb"], &rows),
            "a     bb\n----  --\nx      1\nlong  22\n"
        );
        let m = markdown(&["a", "b"], &[vec!["x|y".into(), "1".into()]]);
        assert_eq!(m, "| a | b |\n|---|---:|\n| x\\|y | 1 |\n");
    }
}
