//! [`NodeStore`]: the node's datasets and plan approvals in SQLite.
//!
//! Everything a node must remember across restarts lives here, written in
//! transactions, so a node killed mid-training comes back with its datasets
//! and approvals intact.
//!
//! Over 500 lines on purpose: the schema, its migrations and every query on
//! it stay in one file so a schema change is read in one place (registering
//! tables and image datasets included); about 250 lines of it are the tests.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::NodeError;
use crate::dataset::{
    ColumnKind, DatasetError, ImageLimits, ManifestColumns, Table, manifest_split, scan_folder,
    scan_manifest,
};
use crate::digest::Sha256Digest;
use crate::wire::{DatasetSummary, PlanStatus};

/// A dataset to register.
#[derive(Debug, Clone)]
pub struct NewDataset {
    /// Short name.
    pub name: String,
    /// Tags a search matches (all of a search's tags must be present).
    pub tags: Vec<String>,
    /// Free text.
    pub description: String,
    /// The CSV file.
    pub path: PathBuf,
    /// The target column, checked against the file.
    pub target: Option<String>,
    /// A column marking the designated test rows (1) and the training rows
    /// (0): held out for validation instead of a `test_ratio` sample, never
    /// trained on, never shown to the plan as a feature.
    pub split_column: Option<String>,
    /// For an image manifest (`path` is then its CSV): which columns hold
    /// the image paths and the labels.
    pub image_columns: Option<ManifestColumns>,
}

/// A registered dataset, path included (it never leaves the node).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRecord {
    /// What researchers see.
    pub summary: DatasetSummary,
    /// Where the file is.
    pub path: PathBuf,
    /// Its split column, if it has a designated test part.
    pub split_column: Option<String>,
    /// An image dataset's digest at registration (every file's path and
    /// bytes), to notice a changed folder.
    pub digest: Option<Sha256Digest>,
    /// An image manifest's columns.
    pub image_columns: Option<ManifestColumns>,
}

/// A plan the node has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    /// Its SHA-256.
    pub sha256: Sha256Digest,
    /// Approved, rejected or pending.
    pub status: PlanStatus,
    /// Name from `describe()`, when known.
    pub name: Option<String>,
    /// The only `model_args` the operator approved it with, when pinned:
    /// approval covers the plan's bytes, and these arguments can switch
    /// what those bytes do.
    pub model_args: Option<serde_json::Value>,
}

/// The node's database.
pub struct NodeStore {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tags TEXT NOT NULL,
    description TEXT NOT NULL,
    data_type TEXT NOT NULL,
    path TEXT NOT NULL,
    target TEXT,
    shape TEXT NOT NULL,
    columns TEXT NOT NULL,
    dtypes TEXT NOT NULL,
    split_column TEXT,
    test_rows INTEGER,
    classes TEXT,
    digest TEXT,
    image_target TEXT,
    image_columns TEXT
);
CREATE TABLE IF NOT EXISTS plans (
    sha256 TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT,
    model_args TEXT
);
";

/// Columns added to the schema after its first release: (table, column,
/// type), added to an older store when it is opened.
const ADDED_COLUMNS: [(&str, &str, &str); 7] = [
    ("plans", "model_args", "TEXT"),
    ("datasets", "split_column", "TEXT"),
    ("datasets", "test_rows", "INTEGER"),
    ("datasets", "classes", "TEXT"),
    ("datasets", "digest", "TEXT"),
    ("datasets", "image_target", "TEXT"),
    ("datasets", "image_columns", "TEXT"),
];

/// A dataset's id: stable for the same file (or folder) and tags.
fn dataset_id(path: &Path, tags: &[String]) -> String {
    let key = format!("{}\0{}", path.display(), tags.join("\0"));
    format!("dataset-{}", Sha256Digest::of(key.as_bytes()).short())
}

fn status_text(status: PlanStatus) -> &'static str {
    match status {
        PlanStatus::Approved => "approved",
        PlanStatus::Rejected => "rejected",
        PlanStatus::Pending => "pending",
        PlanStatus::Unknown => "unknown",
    }
}

fn json<T: serde::de::DeserializeOwned>(text: String) -> Result<T, NodeError> {
    serde_json::from_str(&text).map_err(|e| NodeError::Corrupt(e.to_string()))
}

impl NodeStore {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, NodeError> {
        let db = Connection::open(path)?;
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        db.execute_batch(SCHEMA)?;
        // Stores made by earlier builds lack the columns added since.
        for (table, column, kind) in ADDED_COLUMNS {
            let present: bool = db.query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )?;
            if !present {
                db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind};"))?;
            }
        }
        Ok(NodeStore { db })
    }

    /// Register a CSV dataset after checking the file, the target and the tags.
    pub fn add_dataset(&mut self, new: NewDataset) -> Result<DatasetRecord, NodeError> {
        let mut tags: Vec<String> = new
            .tags
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        tags.sort();
        tags.dedup();
        if tags.is_empty() {
            return Err(NodeError::NoTags);
        }
        for existing in self.datasets()? {
            let other = &existing.summary.tags;
            let subset = tags.iter().all(|t| other.contains(t));
            let superset = other.iter().all(|t| tags.contains(t));
            if subset || superset {
                return Err(NodeError::TagConflict {
                    new: tags,
                    existing: existing.summary.dataset_id,
                    existing_tags: other.clone(),
                });
            }
        }
        if new.path.is_dir() || new.image_columns.is_some() {
            return self.add_images(new, tags);
        }
        let whole = Table::open(&new.path)?;
        let (table, test_rows) = match &new.split_column {
            Some(column) => {
                if new.target.as_ref() == Some(column) {
                    return Err(NodeError::Dataset(DatasetError::Invalid(format!(
                        "`{column}` cannot be both the target and the split column"
                    ))));
                }
                let (rest, test) = whole.split_by_column(column)?;
                let n_test = test.iter().filter(|t| **t).count();
                (rest, Some(n_test as u64))
            }
            None => (whole, None),
        };
        if let Some(target) = &new.target {
            table.column(target)?;
        }
        let training_rows = table.rows() as u64 - test_rows.unwrap_or(0);
        let path = std::fs::canonicalize(&new.path).unwrap_or(new.path.clone());
        let id = dataset_id(&path, &tags);
        let summary = DatasetSummary {
            dataset_id: id,
            name: new.name,
            tags,
            description: new.description,
            data_type: if Table::is_npy(&new.path) {
                "npy"
            } else {
                "csv"
            }
            .into(),
            shape: vec![training_rows, table.width() as u64],
            columns: table.names().to_vec(),
            dtypes: table
                .kinds()
                .iter()
                .map(|k| match k {
                    ColumnKind::Integer => "integer".to_string(),
                    ColumnKind::Float => "float".to_string(),
                })
                .collect(),
            target: new.target,
            test_rows,
            classes: Vec::new(),
            image_target: None,
        };
        let record = DatasetRecord {
            summary,
            path,
            split_column: new.split_column,
            digest: None,
            image_columns: None,
        };
        self.insert(&record)?;
        Ok(record)
    }

    /// Register the image folder `new.path` (one sub-folder per class), or
    /// the manifest `new.path` with `new.image_columns`, after reading every
    /// image once.
    fn add_images(
        &mut self,
        new: NewDataset,
        tags: Vec<String>,
    ) -> Result<DatasetRecord, NodeError> {
        let refuse = |reason: &str| NodeError::Dataset(DatasetError::Invalid(reason.into()));
        if new.target.is_some() {
            return Err(refuse(
                "an image dataset's labels are its class sub-folders or its manifest's target columns; leave out the table target",
            ));
        }
        if new.split_column.is_some() && new.image_columns.is_none() {
            return Err(refuse(
                "an image folder has no column to split by; list the images in a CSV manifest with a 0/1 split column",
            ));
        }
        let limits = ImageLimits::default();
        let found = match (&new.image_columns, new.path.is_dir()) {
            (None, _) => scan_folder(&new.path, &limits)?,
            (Some(_), true) => {
                return Err(refuse(
                    "a manifest is a CSV file; for a folder of class sub-folders leave out the image column",
                ));
            }
            (Some(columns), false) => scan_manifest(&new.path, columns, &limits)?,
        };
        let test_rows = match &new.split_column {
            Some(column) => {
                let test = manifest_split(&new.path, column, &limits)?;
                Some(test.iter().filter(|t| **t).count() as u64)
            }
            None => None,
        };
        let training_images = found.items.len() as u64 - test_rows.unwrap_or(0);
        let path = std::fs::canonicalize(&new.path).unwrap_or(new.path.clone());
        let id = dataset_id(&path, &tags);
        let record = DatasetRecord {
            summary: DatasetSummary {
                dataset_id: id,
                name: new.name,
                tags,
                description: new.description,
                data_type: "images".into(),
                shape: vec![
                    training_images,
                    u64::from(found.mode.channels),
                    u64::from(found.height),
                    u64::from(found.width),
                ],
                columns: Vec::new(),
                dtypes: Vec::new(),
                target: None,
                test_rows,
                classes: found.classes,
                image_target: Some(found.kind.name().to_string()),
            },
            path,
            split_column: new.split_column,
            digest: Some(found.digest),
            image_columns: new.image_columns,
        };
        self.insert(&record)?;
        Ok(record)
    }

    fn insert(&mut self, record: &DatasetRecord) -> Result<(), NodeError> {
        let s = &record.summary;
        self.db.execute(
            "INSERT INTO datasets (id, name, tags, description, data_type, path, target, shape, columns, dtypes, split_column, test_rows, classes, digest, image_target, image_columns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                s.dataset_id,
                s.name,
                serde_json::to_string(&s.tags).expect("strings serialise"),
                s.description,
                s.data_type,
                record.path.to_string_lossy(),
                s.target,
                serde_json::to_string(&s.shape).expect("numbers serialise"),
                serde_json::to_string(&s.columns).expect("strings serialise"),
                serde_json::to_string(&s.dtypes).expect("strings serialise"),
                record.split_column,
                s.test_rows.map(|n| n as i64),
                serde_json::to_string(&s.classes).expect("strings serialise"),
                record.digest.map(|d| d.to_hex()),
                s.image_target,
                record
                    .image_columns
                    .as_ref()
                    .map(|c| serde_json::to_string(c).expect("columns serialise")),
            ],
        )?;
        Ok(())
    }

    /// Every dataset, in id order.
    pub fn datasets(&self) -> Result<Vec<DatasetRecord>, NodeError> {
        let mut stmt = self.db.prepare(
            "SELECT id, name, tags, description, data_type, path, target, shape, columns, dtypes, split_column, test_rows, classes, digest, image_target, image_columns FROM datasets ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, Option<String>>(10)?,
                r.get::<_, Option<i64>>(11)?,
                r.get::<_, Option<String>>(12)?,
                r.get::<_, Option<String>>(13)?,
                r.get::<_, Option<String>>(14)?,
                r.get::<_, Option<String>>(15)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                dataset_id,
                name,
                tags,
                description,
                data_type,
                path,
                target,
                shape,
                columns,
                dtypes,
                split_column,
                test_rows,
                classes,
                digest,
                image_target,
                image_columns,
            ) = row?;
            out.push(DatasetRecord {
                summary: DatasetSummary {
                    dataset_id,
                    name,
                    tags: json(tags)?,
                    description,
                    data_type,
                    shape: json(shape)?,
                    columns: json(columns)?,
                    dtypes: json(dtypes)?,
                    target,
                    test_rows: test_rows
                        .map(u64::try_from)
                        .transpose()
                        .map_err(|_| NodeError::Corrupt("a negative test row count".into()))?,
                    classes: classes.map(json).transpose()?.unwrap_or_default(),
                    image_target,
                },
                path: PathBuf::from(path),
                split_column,
                digest: digest
                    .map(|hex| {
                        hex.parse::<Sha256Digest>()
                            .map_err(|e| NodeError::Corrupt(format!("dataset digest: {e}")))
                    })
                    .transpose()?,
                image_columns: image_columns.map(json).transpose()?,
            });
        }
        Ok(out)
    }

    /// Datasets carrying every one of `tags`.
    pub fn search(&self, tags: &[String]) -> Result<Vec<DatasetRecord>, NodeError> {
        Ok(self
            .datasets()?
            .into_iter()
            .filter(|d| tags.iter().all(|t| d.summary.tags.contains(t)))
            .collect())
    }

    /// The dataset with `id`.
    pub fn dataset(&self, id: &str) -> Result<DatasetRecord, NodeError> {
        self.datasets()?
            .into_iter()
            .find(|d| d.summary.dataset_id == id)
            .ok_or_else(|| NodeError::UnknownDataset(id.to_string()))
    }

    /// Whether image dataset `id` still holds what was registered: every
    /// file read again and digested. `Ok(false)` when it changed; an error
    /// names a file that became unreadable. Tables are not digested.
    pub fn images_unchanged(&self, id: &str) -> Result<bool, NodeError> {
        let record = self.dataset(id)?;
        let Some(registered) = record.digest else {
            return Err(NodeError::Dataset(DatasetError::Invalid(format!(
                "dataset {id} is a table; only image datasets are digested"
            ))));
        };
        let limits = ImageLimits::default();
        let found = match &record.image_columns {
            Some(columns) => scan_manifest(&record.path, columns, &limits)?,
            None => scan_folder(&record.path, &limits)?,
        };
        Ok(found.digest == registered)
    }

    /// Forget dataset `id` (its files stay).
    pub fn remove_dataset(&mut self, id: &str) -> Result<(), NodeError> {
        match self
            .db
            .execute("DELETE FROM datasets WHERE id = ?1", [id])?
        {
            0 => Err(NodeError::UnknownDataset(id.to_string())),
            _ => Ok(()),
        }
    }

    /// Set a plan's status (approve, reject), creating its record if needed.
    pub fn set_plan_status(
        &mut self,
        sha256: &Sha256Digest,
        status: PlanStatus,
        name: Option<&str>,
    ) -> Result<(), NodeError> {
        self.db.execute(
            "INSERT INTO plans (sha256, status, name) VALUES (?1, ?2, ?3)
             ON CONFLICT(sha256) DO UPDATE SET status = excluded.status, name = COALESCE(excluded.name, plans.name)",
            params![sha256.to_hex(), status_text(status), name],
        )?;
        Ok(())
    }

    /// Pin the `model_args` an approved plan may run with (`None`: any).
    pub fn pin_model_args(
        &mut self,
        sha256: &Sha256Digest,
        model_args: Option<&serde_json::Value>,
    ) -> Result<(), NodeError> {
        let text = model_args.map(serde_json::Value::to_string);
        self.db.execute(
            "UPDATE plans SET model_args = ?2 WHERE sha256 = ?1",
            params![sha256.to_hex(), text],
        )?;
        Ok(())
    }

    /// The `model_args` a plan is pinned to, if any.
    pub fn pinned_model_args(
        &self,
        sha256: &Sha256Digest,
    ) -> Result<Option<serde_json::Value>, NodeError> {
        let text: Option<Option<String>> = self
            .db
            .query_row(
                "SELECT model_args FROM plans WHERE sha256 = ?1",
                [sha256.to_hex()],
                |r| r.get(0),
            )
            .optional()?;
        text.flatten()
            .map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| NodeError::Corrupt(format!("pinned model_args: {e}")))
            })
            .transpose()
    }

    /// Record a requested plan as pending unless the operator already
    /// decided. A plan never seen is refused when `max_pending` plans already
    /// wait for a decision, so requests cannot flood the operator's list.
    pub fn note_requested_plan(
        &mut self,
        sha256: &Sha256Digest,
        name: Option<&str>,
        max_pending: usize,
    ) -> Result<PlanStatus, NodeError> {
        if self.plan_status(sha256)? == PlanStatus::Unknown {
            let pending: usize = self.db.query_row(
                "SELECT COUNT(*) FROM plans WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?;
            if pending >= max_pending {
                return Err(NodeError::TooManyPending(pending));
            }
        }
        self.db.execute(
            "INSERT INTO plans (sha256, status, name) VALUES (?1, 'pending', ?2) ON CONFLICT(sha256) DO NOTHING",
            params![sha256.to_hex(), name],
        )?;
        self.plan_status(sha256)
    }

    /// A plan's status; [`PlanStatus::Unknown`] when never seen.
    pub fn plan_status(&self, sha256: &Sha256Digest) -> Result<PlanStatus, NodeError> {
        let status: Option<String> = self
            .db
            .query_row(
                "SELECT status FROM plans WHERE sha256 = ?1",
                [sha256.to_hex()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match status.as_deref() {
            None => PlanStatus::Unknown,
            Some("approved") => PlanStatus::Approved,
            Some("rejected") => PlanStatus::Rejected,
            Some("pending") => PlanStatus::Pending,
            Some(other) => return Err(NodeError::Corrupt(format!("plan status `{other}`"))),
        })
    }

    /// Every plan seen, by hash.
    pub fn plans(&self) -> Result<Vec<PlanRecord>, NodeError> {
        let mut stmt = self
            .db
            .prepare("SELECT sha256, name FROM plans ORDER BY sha256")?;
        let rows: Vec<(String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(hex, name)| {
                let sha256: Sha256Digest = hex
                    .parse()
                    .map_err(|e: crate::digest::BadDigest| NodeError::Corrupt(e.to_string()))?;
                Ok(PlanRecord {
                    sha256,
                    status: self.plan_status(&sha256)?,
                    name,
                    model_args: self.pinned_model_args(&sha256)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "a,b,label\n1,2.5,0\n3,4,1\n").unwrap();
        path
    }

    fn new(dir: &Path, tags: &[&str]) -> NewDataset {
        NewDataset {
            name: "d".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: String::new(),
            path: csv(dir, &format!("{}.csv", tags.join("_"))),
            target: Some("label".into()),
            split_column: None,
            image_columns: None,
        }
    }

    #[test]
    fn a_store_of_the_first_schema_gains_every_added_column() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch(
                "CREATE TABLE datasets (id TEXT PRIMARY KEY, name TEXT NOT NULL, tags TEXT NOT NULL,
                     description TEXT NOT NULL, data_type TEXT NOT NULL, path TEXT NOT NULL,
                     target TEXT, shape TEXT NOT NULL, columns TEXT NOT NULL, dtypes TEXT NOT NULL);
                 CREATE TABLE plans (sha256 TEXT PRIMARY KEY, status TEXT NOT NULL, name TEXT);",
            )
            .unwrap();
        let mut store = NodeStore::open(&db).unwrap();
        let rec = store.add_dataset(new(dir.path(), &["#old"])).unwrap();
        assert_eq!(store.datasets().unwrap(), vec![rec]);
    }

    #[test]
    fn an_image_folder_registers_its_classes_shape_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("xray");
        for (class, count) in [("normal", 2), ("effusion", 1)] {
            std::fs::create_dir_all(images.join(class)).unwrap();
            for i in 0..count {
                image::ImageBuffer::from_pixel(6, 5, image::Luma([i as u8 * 40]))
                    .save(images.join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let db = dir.path().join("node.db");
        let mut store = NodeStore::open(&db).unwrap();
        let folder = |tags: &[&str]| NewDataset {
            name: "xray".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: String::new(),
            path: images.clone(),
            target: None,
            split_column: None,
            image_columns: None,
        };
        let rec = store.add_dataset(folder(&["#xray"])).unwrap();
        assert_eq!(rec.summary.data_type, "images");
        assert_eq!(rec.summary.shape, vec![3, 1, 5, 6]);
        assert_eq!(rec.summary.classes, ["effusion", "normal"]);
        assert!(rec.digest.is_some());
        drop(store);
        let mut store = NodeStore::open(&db).unwrap();
        assert_eq!(store.datasets().unwrap(), vec![rec]);
        let mut labelled = folder(&["#other"]);
        labelled.target = Some("label".into());
        let err = store.add_dataset(labelled).unwrap_err().to_string();
        assert!(err.contains("labels are its class sub-folders"), "{err}");
        let mut split = folder(&["#split"]);
        split.split_column = Some("fold".into());
        let err = store.add_dataset(split).unwrap_err().to_string();
        assert!(err.contains("list the images in a CSV manifest"), "{err}");

        // Listed by a manifest, the same images take a split column.
        let manifest = images.join("labels.csv");
        std::fs::write(
            &manifest,
            "file,class,fold\nnormal/0.png,normal,0\nnormal/1.png,normal,1\neffusion/0.png,effusion,0\n",
        )
        .unwrap();
        let rec = store
            .add_dataset(NewDataset {
                path: manifest,
                split_column: Some("fold".into()),
                image_columns: Some(ManifestColumns {
                    image: "file".into(),
                    target: crate::dataset::ManifestTarget::Class("class".into()),
                }),
                ..folder(&["#manifest"])
            })
            .unwrap();
        assert_eq!(rec.summary.shape, vec![2, 1, 5, 6], "training images");
        assert_eq!(rec.summary.test_rows, Some(1));
        assert_eq!(rec.split_column.as_deref(), Some("fold"));
    }

    #[test]
    fn a_split_column_registers_a_test_part_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.db");
        let with_split = |name: &str, cells: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("a,fold,label\n{cells}")).unwrap();
            NewDataset {
                name: name.into(),
                tags: vec![format!("#{name}")],
                description: String::new(),
                path,
                target: Some("label".into()),
                split_column: Some("fold".into()),
                image_columns: None,
            }
        };
        let mut store = NodeStore::open(&db).unwrap();
        let rec = store
            .add_dataset(with_split("good", "1,0,0\n2,1,1\n3,0,1\n"))
            .unwrap();
        assert_eq!(rec.summary.shape, vec![2, 2]);
        assert_eq!(rec.summary.columns, ["a", "label"]);
        assert_eq!(rec.summary.test_rows, Some(1));
        drop(store);
        let reopened = NodeStore::open(&db).unwrap().datasets().unwrap();
        assert_eq!(reopened, vec![rec]);
        let mut store = NodeStore::open(&db).unwrap();
        let err = store
            .add_dataset(with_split("two", "1,0,0\n2,2,1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 2: split column `fold` = 2"), "{err}");
        let err = store
            .add_dataset(with_split("none", "1,0,0\n2,0,1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("marks 0 of 2 rows as test"), "{err}");
        let mut same = with_split("same", "1,0,0\n2,1,1\n");
        same.target = Some("fold".into());
        let err = store.add_dataset(same).unwrap_err().to_string();
        assert!(
            err.contains("both the target and the split column"),
            "{err}"
        );
    }

    #[test]
    fn datasets_survive_reopening_and_search_needs_every_tag() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.db");
        let id = {
            let mut store = NodeStore::open(&db).unwrap();
            let rec = store
                .add_dataset(new(dir.path(), &["#cancer", "#site-a"]))
                .unwrap();
            assert_eq!(rec.summary.shape, vec![2, 3]);
            assert_eq!(rec.summary.dtypes, vec!["integer", "float", "integer"]);
            store.add_dataset(new(dir.path(), &["#digits"])).unwrap();
            rec.summary.dataset_id
        };
        let store = NodeStore::open(&db).unwrap();
        assert_eq!(store.datasets().unwrap().len(), 2);
        let found = store.search(&["#cancer".into(), "#site-a".into()]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].summary.dataset_id, id);
        assert!(
            store
                .search(&["#cancer".into(), "#other".into()])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn conflicting_tags_bad_targets_and_unknown_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = NodeStore::open(&dir.path().join("node.db")).unwrap();
        store.add_dataset(new(dir.path(), &["#a", "#b"])).unwrap();
        for tags in [&["#a"][..], &["#a", "#b", "#c"], &["#b", "#a"]] {
            let err = store.add_dataset(new(dir.path(), tags)).unwrap_err();
            assert!(
                matches!(err, NodeError::TagConflict { .. }),
                "{tags:?}: {err}"
            );
        }
        store.add_dataset(new(dir.path(), &["#a", "#c"])).unwrap();
        let mut bad_target = new(dir.path(), &["#z"]);
        bad_target.target = Some("outcome".into());
        let err = store.add_dataset(bad_target).unwrap_err().to_string();
        assert!(err.contains("no column `outcome`"), "{err}");
        let mut missing = new(dir.path(), &["#y"]);
        missing.path = dir.path().join("absent.csv");
        assert!(
            store
                .add_dataset(missing)
                .unwrap_err()
                .to_string()
                .contains("cannot read dataset")
        );
        assert!(matches!(
            store.add_dataset(new(dir.path(), &[" "])).unwrap_err(),
            NodeError::NoTags
        ));
        assert!(matches!(
            store.remove_dataset("dataset-x").unwrap_err(),
            NodeError::UnknownDataset(_)
        ));
    }

    #[test]
    fn plan_approvals_persist_and_requests_do_not_override_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.db");
        let (a, b) = (Sha256Digest::of(b"plan a"), Sha256Digest::of(b"plan b"));
        {
            let mut store = NodeStore::open(&db).unwrap();
            assert_eq!(store.plan_status(&a).unwrap(), PlanStatus::Unknown);
            assert_eq!(
                store.note_requested_plan(&a, Some("mlp"), 8).unwrap(),
                PlanStatus::Pending
            );
            store
                .set_plan_status(&a, PlanStatus::Approved, None)
                .unwrap();
            store
                .set_plan_status(&b, PlanStatus::Rejected, None)
                .unwrap();
            assert_eq!(
                store.note_requested_plan(&b, None, 8).unwrap(),
                PlanStatus::Rejected
            );
        }
        let store = NodeStore::open(&db).unwrap();
        assert_eq!(store.plan_status(&a).unwrap(), PlanStatus::Approved);
        let plans = store.plans().unwrap();
        assert_eq!(plans.len(), 2);
        assert!(
            plans
                .iter()
                .any(|p| p.sha256 == a && p.name.as_deref() == Some("mlp"))
        );
    }

    #[test]
    fn pending_requests_are_capped_and_model_args_can_be_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = NodeStore::open(&dir.path().join("node.db")).unwrap();
        for i in 0..3 {
            let plan = Sha256Digest::of(format!("plan {i}").as_bytes());
            assert_eq!(
                store.note_requested_plan(&plan, None, 3).unwrap(),
                PlanStatus::Pending
            );
        }
        let flood = Sha256Digest::of(b"plan 4");
        let err = store.note_requested_plan(&flood, None, 3).unwrap_err();
        assert!(matches!(err, NodeError::TooManyPending(3)), "{err}");
        assert_eq!(store.plan_status(&flood).unwrap(), PlanStatus::Unknown);
        // A plan already listed is still answered.
        let known = Sha256Digest::of(b"plan 0");
        assert_eq!(
            store.note_requested_plan(&known, None, 3).unwrap(),
            PlanStatus::Pending
        );
        // Deciding frees a place.
        store
            .set_plan_status(&known, PlanStatus::Approved, None)
            .unwrap();
        assert_eq!(
            store.note_requested_plan(&flood, None, 3).unwrap(),
            PlanStatus::Pending
        );

        let args = serde_json::json!({"n_features": 30, "n_classes": 2});
        assert_eq!(store.pinned_model_args(&known).unwrap(), None);
        store.pin_model_args(&known, Some(&args)).unwrap();
        assert_eq!(store.pinned_model_args(&known).unwrap(), Some(args.clone()));
        let listed = store.plans().unwrap();
        assert!(
            listed
                .iter()
                .any(|p| p.sha256 == known && p.model_args == Some(args.clone()))
        );
        store.pin_model_args(&known, None).unwrap();
        assert_eq!(store.pinned_model_args(&known).unwrap(), None);
    }
}
