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

/// Longest `.npy` header accepted; NumPy writes well under 1 KiB.
const MAX_NPY_HEADER: usize = 16 * 1024;

/// Refuse a `.npy` header that is not the flat dictionary NumPy writes
/// (`{'descr': …, 'fortran_order': …, 'shape': (…), }`) before the Python
/// literal parser sees it: nested brackets make that parser take time
/// exponential in their depth (a 138-byte header found by fuzzing took 69 s).
fn check_npy_header(bytes: &[u8]) -> Result<(), String> {
    let bad = |what: &str| Err(format!("not a readable .npy array: {what}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return bad("no NumPy magic string");
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return bad("unknown format version"),
    };
    if len > MAX_NPY_HEADER || start + len > bytes.len() {
        return bad("header length out of range");
    }
    let header = &bytes[start..start + len];
    let count = |c: u8| header.iter().filter(|&&b| b == c).count();
    let flat = count(b'{') == 1
        && count(b'}') == 1
        && count(b'[') == 0
        && count(b']') == 0
        && count(b'(') <= 1
        && count(b')') <= 1;
    if !flat {
        return bad("the header is not a flat dictionary as NumPy writes it");
    }
    Ok(())
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

    /// Read a dataset file: `.npy` as a NumPy array, anything else as CSV.
    pub fn open(path: &Path) -> Result<Self, DatasetError> {
        if Self::is_npy(path) {
            Self::from_npy(path)
        } else {
            Self::from_csv(path)
        }
    }

    /// Whether `path` names a NumPy `.npy` file.
    pub fn is_npy(path: &Path) -> bool {
        path.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    }

    /// Read a `.npy` array of any numeric dtype: rows are the first axis,
    /// every other axis is flattened into columns named `x0`, `x1`, …
    /// (a 1-D array is one column `x0`).
    pub fn from_npy(path: &Path) -> Result<Self, DatasetError> {
        let bytes = std::fs::read(path).map_err(|e| DatasetError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_npy_bytes(&bytes, path)
    }

    /// [`Table::from_npy`] on the bytes of a file; `path` only names it in errors.
    pub fn from_npy_bytes(bytes: &[u8], path: &Path) -> Result<Self, DatasetError> {
        use ndarray::ArrayD;
        use ndarray_npy::{ReadNpyError, ReadNpyExt};

        let malformed = |reason: String| DatasetError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        check_npy_header(bytes).map_err(malformed)?;
        type Read = Result<Option<(Vec<usize>, Vec<f64>)>, ReadNpyError>;
        /// The array if its dtype is `T`; `None` when the dtype is another.
        fn attempt<T: ndarray_npy::ReadableElement + Copy>(
            bytes: &[u8],
            widen: fn(T) -> f64,
        ) -> Read {
            match ArrayD::<T>::read_npy(bytes) {
                Ok(a) => Ok(Some((
                    a.shape().to_vec(),
                    a.iter().map(|&v| widen(v)).collect(),
                ))),
                Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
        let dtypes: [fn(&[u8]) -> Read; 9] = [
            |b| attempt::<f64>(b, |v| v),
            |b| attempt::<f32>(b, f64::from),
            |b| attempt::<i64>(b, |v| v as f64),
            |b| attempt::<i32>(b, f64::from),
            |b| attempt::<i16>(b, f64::from),
            |b| attempt::<i8>(b, f64::from),
            |b| attempt::<u32>(b, f64::from),
            |b| attempt::<u16>(b, f64::from),
            |b| attempt::<u8>(b, f64::from),
        ];
        let mut found = None;
        for read in dtypes {
            found =
                read(bytes).map_err(|e| malformed(format!("not a readable .npy array: {e}")))?;
            if found.is_some() {
                break;
            }
        }
        let (shape, values) = found.ok_or_else(|| {
            malformed(
                "unsupported dtype: use float64, float32 or an integer type, little-endian, C order"
                    .into(),
            )
        })?;
        let rows = *shape
            .first()
            .ok_or_else(|| malformed("a 0-dimensional array has no rows".into()))?;
        if rows == 0 || values.is_empty() {
            return Err(malformed("the array has no rows".into()));
        }
        let width = values.len() / rows;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(malformed(format!(
                "row {}, column `x{}` is not a finite number; fill or drop missing values",
                i / width + 1,
                i % width
            )));
        }
        Table::new((0..width).map(|c| format!("x{c}")).collect(), values)
    }

    /// Read a CSV file with a header line.
    pub fn from_csv(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|e| DatasetError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_csv_text(&text, path)
    }

    /// [`Table::from_csv`] on the text of a file; `path` only names it in errors.
    pub fn from_csv_text(text: &str, path: &Path) -> Result<Self, DatasetError> {
        let malformed = |reason: String| DatasetError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
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

    /// The table without its split column `name`, and which rows that
    /// column marks as the designated test part (1) rather than training
    /// rows (0). Both parts must have rows; the error names the first cell
    /// that is neither 0 nor 1.
    pub fn split_by_column(&self, name: &str) -> Result<(Table, Vec<bool>), DatasetError> {
        let split = self.column(name)?;
        if self.width() < 2 {
            return Err(DatasetError::Invalid(format!(
                "the split column `{name}` is the only column"
            )));
        }
        let mut test = Vec::with_capacity(self.rows);
        for row in 0..self.rows {
            match self.get(row, split) {
                0.0 => test.push(false),
                1.0 => test.push(true),
                other => {
                    return Err(DatasetError::Invalid(format!(
                        "row {}: split column `{name}` = {other}; it must be 0 (training) or 1 (test)",
                        row + 1
                    )));
                }
            }
        }
        let n_test = test.iter().filter(|t| **t).count();
        if n_test == 0 || n_test == self.rows {
            return Err(DatasetError::Invalid(format!(
                "split column `{name}` marks {n_test} of {} rows as test; both the training and the test part need rows",
                self.rows
            )));
        }
        let keep = |c: &usize| *c != split;
        let values = self
            .values
            .chunks_exact(self.width())
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(c, _)| keep(c))
                    .map(|(_, v)| *v)
            })
            .collect();
        let table = Table {
            names: (0..self.width())
                .filter(keep)
                .map(|c| self.names[c].clone())
                .collect(),
            kinds: (0..self.width())
                .filter(keep)
                .map(|c| self.kinds[c])
                .collect(),
            rows: self.rows,
            values,
        };
        Ok((table, test))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_column_leaves_the_table_and_marks_the_test_rows() {
        let names = ["a", "split", "y"].map(String::from).to_vec();
        let table = Table::new(
            names.clone(),
            vec![1.5, 0.0, 1.0, 2.5, 1.0, 0.0, 3.5, 0.0, 1.0],
        )
        .expect("table");
        let (rest, test) = table.split_by_column("split").expect("split");
        assert_eq!(rest.names(), ["a", "y"]);
        assert_eq!(rest.kinds(), [ColumnKind::Float, ColumnKind::Integer]);
        assert_eq!((rest.get(1, 0), rest.get(2, 1)), (2.5, 1.0));
        assert_eq!(test, [false, true, false]);
        let bad = |values: Vec<f64>| {
            Table::new(names.clone(), values)
                .expect("table")
                .split_by_column("split")
                .expect_err("refused")
                .to_string()
        };
        assert!(
            bad(vec![1.0, 0.0, 1.0, 2.0, 2.0, 0.0]).contains("row 2: split column `split` = 2")
        );
        assert!(bad(vec![1.0, 0.0, 1.0, 2.0, 0.0, 0.0]).contains("marks 0 of 2 rows as test"));
        assert!(table.split_by_column("fold").is_err());
    }

    #[test]
    fn an_npy_header_that_is_not_a_flat_dictionary_is_refused_at_once() {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let header = format!("{{'descr': '<f4', 'shape': {}, }}\n", "[".repeat(40));
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        let started = std::time::Instant::now();
        let err = Table::from_npy_bytes(&bytes, Path::new("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a flat dictionary"), "{err}");
        assert!(started.elapsed().as_secs() < 5);
    }

    #[test]
    fn npy_arrays_of_any_numeric_dtype_load_as_tables() {
        use ndarray_npy::WriteNpyExt;
        let dir = tempfile::tempdir().unwrap();
        let f32s = dir.path().join("x.npy");
        let array = ndarray::arr2(&[[1.5f32, 2.0, 0.0], [3.0, 4.25, 1.0]]);
        array
            .write_npy(std::fs::File::create(&f32s).unwrap())
            .unwrap();
        let t = Table::open(&f32s).unwrap();
        assert_eq!(t.names(), ["x0", "x1", "x2"]);
        assert_eq!((t.rows(), t.get(1, 1)), (2, 4.25));
        assert_eq!(t.kinds()[2], ColumnKind::Integer);

        let ints = dir.path().join("labels.NPY");
        ndarray::arr1(&[0i64, 1, 1])
            .write_npy(std::fs::File::create(&ints).unwrap())
            .unwrap();
        let t = Table::open(&ints).unwrap();
        assert_eq!((t.rows(), t.width(), t.get(2, 0)), (3, 1, 1.0));

        let nan = dir.path().join("nan.npy");
        ndarray::arr2(&[[1.0f64, f64::NAN]])
            .write_npy(std::fs::File::create(&nan).unwrap())
            .unwrap();
        let err = Table::open(&nan).unwrap_err().to_string();
        assert!(err.contains("row 1, column `x1`"), "{err}");

        let junk = dir.path().join("junk.npy");
        std::fs::write(&junk, b"not numpy").unwrap();
        let err = Table::open(&junk).unwrap_err().to_string();
        assert!(err.contains("not a readable .npy array"), "{err}");
    }

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
