//! Groups as text and JSON (docs/mapping-log.md §9.5).

use std::io::{self, Write};

use super::{Fit, GroupResult, GroupSummary, GroupVerdict, OTHERS_SHOWN};

/// Line numbers shown per subscriber on a text line.
const TEXT_LINES_SHOWN: usize = 8;

fn write_lines(out: &mut impl Write, lines: &[u64], of: u64) -> io::Result<()> {
    let word = if of == 1 { "line" } else { "lines" };
    write!(out, "{word} ")?;
    for (index, line) in lines.iter().take(TEXT_LINES_SHOWN).enumerate() {
        let comma = if index > 0 { ", " } else { "" };
        write!(out, "{comma}{line}")?;
    }
    if of > TEXT_LINES_SHOWN.min(lines.len()) as u64 {
        out.write_all(", …".as_bytes())?;
    }
    Ok(())
}

fn write_fits(out: &mut impl Write, fits: &[Fit], of: u64, with_lines: bool) -> io::Result<()> {
    for (index, fit) in fits.iter().enumerate() {
        let comma = if index > 0 { ", " } else { "" };
        write!(out, "{comma}{} ({} of {of}", fit.subscriber, fit.requests)?;
        if with_lines {
            out.write_all(b": ")?;
            write_lines(out, &fit.lines, fit.requests)?;
        }
        out.write_all(b")")?;
    }
    Ok(())
}

/// One text line per group.
pub fn write_group_text(
    out: &mut impl Write,
    number: usize,
    field: &str,
    group: &GroupResult,
) -> io::Result<()> {
    // Debug formatting quotes the value and escapes control characters: a crafted value
    // must not drive the operator's terminal.
    let more = if group.value_truncated { "…" } else { "" };
    let n = group.requests;
    write!(
        out,
        "group {number}  {field} {:?}{more}  {n} request{}  (",
        group.value,
        if n == 1 { "" } else { "s" }
    )?;
    write_lines(out, &group.lines, n)?;
    write!(out, ")  {}", group.verdict.name())?;
    match group.verdict {
        GroupVerdict::Unique => {
            out.write_all(b" ")?;
            write_fits(out, &group.fit_all, n, false)?;
        }
        GroupVerdict::Ambiguous => {
            write!(out, " ({}): ", group.fit_all.len())?;
            let shown = &group.fit_all[..group.fit_all.len().min(OTHERS_SHOWN)];
            write_fits(out, shown, n, false)?;
            if group.fit_all.len() > shown.len() {
                write!(out, ", … ({} more)", group.fit_all.len() - shown.len())?;
            }
        }
        GroupVerdict::Conflict => {
            out.write_all(b": most requests fitted by ")?;
            write_fits(out, &group.others, n, true)?;
        }
        GroupVerdict::None | GroupVerdict::Undetermined => {}
    }
    if group.verdict == GroupVerdict::Ambiguous && !group.others.is_empty() {
        out.write_all(b"; others: ")?;
        write_fits(out, &group.others, n, false)?;
    }
    if group.not_followed > 0 {
        write!(
            out,
            "  [{} candidate subscribers over the caps not followed]",
            group.not_followed
        )?;
    }
    out.write_all(b"\n")
}

fn fit_json(fit: &Fit) -> serde_json::Value {
    serde_json::json!({
        "subscriber": fit.subscriber.to_string(),
        "requests": fit.requests,
        "lines": fit.lines,
    })
}

/// One JSON object per group: `{"group": {...}}` (schema in docs/mapping-log.md §9.5).
pub fn write_group_json(out: &mut impl Write, field: &str, group: &GroupResult) -> io::Result<()> {
    let object = serde_json::json!({"group": {
        "field": field,
        "value": group.value,
        "value_truncated": group.value_truncated,
        "requests": group.requests,
        "lines": group.lines,
        "verdict": group.verdict.name(),
        "fit_all": group.fit_all.iter().map(fit_json).collect::<Vec<_>>(),
        "others": group.others.iter().map(fit_json).collect::<Vec<_>>(),
        "not_followed": group.not_followed,
    }});
    serde_json::to_writer(&mut *out, &object)?;
    out.write_all(b"\n")
}

/// The groups' summary line, text or `{"group_summary": {...}}`.
pub fn write_group_summary(
    out: &mut impl Write,
    field: &str,
    s: &GroupSummary,
    json: bool,
) -> io::Result<()> {
    if json {
        let object = serde_json::json!({"group_summary": {
            "field": field,
            "groups": s.groups, "unique": s.unique, "ambiguous": s.ambiguous,
            "conflict": s.conflict, "none": s.none, "undetermined": s.undetermined,
            "requests_in_unique": s.requests_in_unique,
            "without_value": s.without_value,
            "over_group_cap": s.over_group_cap,
            "groups_capped": s.groups_capped,
        }});
        serde_json::to_writer(&mut *out, &object)?;
        return out.write_all(b"\n");
    }
    write!(
        out,
        "{} groups by {field}: {} unique, {} ambiguous, {} conflict, {} none, {} undetermined; \
         {} requests in unique groups; {} requests without a {field} (not grouped)",
        s.groups,
        s.unique,
        s.ambiguous,
        s.conflict,
        s.none,
        s.undetermined,
        s.requests_in_unique,
        s.without_value
    )?;
    if s.over_group_cap > 0 {
        write!(
            out,
            "; {} requests over the cap of groups (not grouped)",
            s.over_group_cap
        )?;
    }
    if s.groups_capped > 0 {
        write!(
            out,
            "; {} groups with candidates over the caps",
            s.groups_capped
        )?;
    }
    out.write_all(b"\n")
}
