//! `ferrum-bench knobs`: print the knob registry.

use clap::ValueEnum;

use crate::config::knobs::Registry;
use crate::error::{Error, EXIT_OK};

/// Output formats of `knobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text table.
    Table,
    /// JSON array of knob objects.
    Json,
}

/// Options of `knobs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only knobs whose name contains this text (case-insensitive).
    #[arg(long)]
    pub filter: Option<String>,
}

/// Run `knobs`.
pub fn run(args: Args) -> Result<i32, Error> {
    let filter = args.filter.map(|f| f.to_ascii_uppercase());
    let knobs: Vec<_> = Registry::global()
        .knobs()
        .iter()
        .filter(|k| filter.as_ref().is_none_or(|f| k.name.contains(f.as_str())))
        .collect();
    let text = match args.format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&knobs).map_err(|err| {
                Error::Usage(format!("cannot serialize the knob registry: {err}"))
            })?;
            text.push('\n');
            text
        }
        Format::Table => {
            let rows: Vec<[String; 6]> = knobs
                .iter()
                .map(|k| {
                    [
                        k.name.clone(),
                        k.kind.label(),
                        k.default.clone(),
                        k.affects
                            .iter()
                            .map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join("/"),
                        k.readers.label().to_string(),
                        k.meaning.clone(),
                    ]
                })
                .collect();
            let header = ["knob", "type", "default", "affects", "read by", "meaning"];
            let mut widths = header.map(str::len);
            for row in &rows {
                for (i, cell) in row.iter().enumerate().take(5) {
                    widths[i] = widths[i].max(cell.chars().count().min(40));
                }
            }
            let line = |cells: [&str; 6]| {
                let mut out = String::new();
                for (i, cell) in cells.iter().enumerate() {
                    if i < 5 {
                        let shown: String = if cell.chars().count() > 40 {
                            cell.chars().take(39).chain(['…']).collect()
                        } else {
                            cell.to_string()
                        };
                        out.push_str(&format!("{:<w$}  ", shown, w = widths[i]));
                    } else {
                        out.push_str(cell);
                    }
                }
                out.push('\n');
                out
            };
            let mut text = line(header);
            for row in &rows {
                text.push_str(&line([
                    &row[0], &row[1], &row[2], &row[3], &row[4], &row[5],
                ]));
            }
            text.push_str(&format!("{} knobs\n", rows.len()));
            text
        }
    };
    super::print_stdout(&text)?;
    Ok(EXIT_OK)
}
