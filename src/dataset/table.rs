//! A numeric table read from CSV.
//!
//! The first line is the header; the delimiter (`,`, `;` or tab) is detected
//! from it. Every cell must parse as a number: a text or empty cell is an error
//! naming its row, column and value, because silently dropping or imputing
//! values on a hospital's data is a decision for its operator, not for us.

use std::path::Path;

use super::DatasetError;

/// Whether every value of a column is integral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// All values are whole numbers.
    Integer,
    /// Some value has a fractional part.
    Float,
}

/// Rows × columns of f64, row-major, with column names and kinds.
#[derive(Debug, Clone)]
pub struct Table {
    names: Vec<String>,
    kinds: Vec<ColumnKind>,
    rows: usize,
    values: Vec<f64>,
}

fn detect_delimiter(header: &str) -> u8 {
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| header.bytes().filter(|b| b == d).count())
        .unwrap_or(b',')
}

impl Table {
    /// Build a table from names and row-major values.
    pub fn new(names: Vec<String>, values: Vec<f64>) -> Result<Self, DatasetError> {
        let width = names.len();
        if width == 0 || !values.len().is_multiple_of(width) {
            return Err(DatasetError::Invalid(format!(
                "{} values do not fill rows of {width} columns",
                values.len()
            )));
        }
        let rows = values.len() / width;
        let kinds = (0..width)
            .map(|c| {
                if (0..rows).all(|r| values[r * width + c].fract() == 0.0) {
                    ColumnKind::Integer
                } else {
                    ColumnKind::Float
                }
            })
            .collect();
        Ok(Table {
            names,
            kinds,
            rows,
            values,
        })
    }

    /// Read a CSV file with a header line.
    pub fn from_csv(path: &Path) -> Result<Self, DatasetError> {
        let unreadable = |reason: String| DatasetError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        let malformed = |reason: String| DatasetError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let header = text
            .lines()
            .next()
            .ok_or_else(|| malformed("the file is empty".into()))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(detect_delimiter(header))
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| malformed(format!("bad header: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        if let Some(dup) = names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
        {
            return Err(malformed(format!(
                "column `{}` appears twice in the header",
                dup.1
            )));
        }
        if names.iter().any(String::is_empty) {
            return Err(malformed("the header has an empty column name".into()));
        }
        let mut values = Vec::new();
        for (r, record) in reader.records().enumerate() {
            let record = record.map_err(|e| malformed(format!("row {}: {e}", r + 1)))?;
            if record.len() != names.len() {
                return Err(malformed(format!(
                    "row {} has {} cells, the header has {} columns",
                    r + 1,
                    record.len(),
                    names.len()
                )));
            }
            for (c, cell) in record.iter().enumerate() {
                let v: f64 = cell
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| {
                        malformed(format!(
                            "row {}, column `{}`: `{cell}` is not a finite number; \
                         encode categories as numbers and fill or drop missing values",
                            r + 1,
                            names[c]
                        ))
                    })?;
                values.push(v);
            }
        }
        if values.is_empty() {
            return Err(malformed("the file has a header but no data rows".into()));
        }
        Table::new(names, values)
    }

    /// Column names in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Column kinds in file order.
    pub fn kinds(&self) -> &[ColumnKind] {
        &self.kinds
    }

    /// Number of data rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// Value at `row`, `col`.
    pub fn get(&self, row: usize, col: usize) -> f64 {
        self.values[row * self.width() + col]
    }

    /// Index of the column called `name`.
    pub fn column(&self, name: &str) -> Result<usize, DatasetError> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| DatasetError::UnknownColumn {
                column: name.to_string(),
                available: self.names.join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn reads_numbers_kinds_and_semicolons() {
        let f = write("a;b;label\n1.5;2;0\n-3;4;1\n");
        let t = Table::from_csv(f.path()).unwrap();
        assert_eq!(t.names(), ["a", "b", "label"]);
        assert_eq!(
            t.kinds(),
            [ColumnKind::Float, ColumnKind::Integer, ColumnKind::Integer]
        );
        assert_eq!((t.rows(), t.get(1, 0)), (2, -3.0));
        assert_eq!(t.column("label").unwrap(), 2);
        let err = t.column("target").unwrap_err().to_string();
        assert!(
            err.contains("no column `target`") && err.contains("a, b, label"),
            "{err}"
        );
    }

    #[test]
    fn names_the_bad_cell() {
        let f = write("a,b\n1,2\n3,x\n");
        let err = Table::from_csv(f.path()).unwrap_err().to_string();
        assert!(
            err.contains("row 2, column `b`: `x` is not a finite number"),
            "{err}"
        );
        let f = write("a,b\n1,2\n3\n");
        let err = Table::from_csv(f.path()).unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
        let f = write("a,b\n");
        assert!(
            Table::from_csv(f.path())
                .unwrap_err()
                .to_string()
                .contains("no data rows")
        );
        let err = Table::from_csv(Path::new("/nonexistent/x.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read dataset"), "{err}");
    }
}
