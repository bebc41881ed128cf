//! Dealing a shipped dataset to the demo's nodes: seeded shards of a table
//! (one CSV per node, 20% held out), of an image folder (one folder per
//! node, the dataset's own test part held out) or of a mask manifest (one
//! manifest per node beside its copied tiles and masks, the dataset's test
//! manifest held out), iid or label-skewed.

use std::collections::BTreeMap;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rand_distr::{Distribution, Gamma};

use super::{DemoError, DemoOptions, setup};
use crate::dataset::{LoadedImages, ManifestColumns, ManifestTarget, Table, read_images};
use crate::node::NewDataset;
use crate::sandbox::SandboxConfig;

/// How rows are dealt to nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShardSplit {
    /// Uniformly at random: every node sees every label in proportion.
    Iid,
    /// Label-skewed: each label's rows are split by proportions drawn from a
    /// symmetric Dirichlet(alpha); small alpha gives very unequal shards.
    Dirichlet {
        /// Concentration; must be positive.
        alpha: f64,
    },
}
/// Rows of each node and the held-out rows, as indices into `labels`.
/// 20% of the rows are held out (stratified by nothing: a seeded shuffle),
/// the rest dealt to `nodes` shards; every shard gets at least `min_rows`.
pub fn deal_rows(
    labels: &[f64],
    nodes: usize,
    split: ShardSplit,
    seed: u64,
    min_rows: usize,
) -> Result<(Vec<Vec<usize>>, Vec<usize>), DemoError> {
    deal(labels, nodes, split, seed, min_rows, labels.len() / 5)
}

/// Every row dealt to `nodes` shards, none held out (the data has a test
/// part of its own).
pub fn deal_all(
    labels: &[f64],
    nodes: usize,
    split: ShardSplit,
    seed: u64,
    min_rows: usize,
) -> Result<Vec<Vec<usize>>, DemoError> {
    Ok(deal(labels, nodes, split, seed, min_rows, 0)?.0)
}

fn deal(
    labels: &[f64],
    nodes: usize,
    split: ShardSplit,
    seed: u64,
    min_rows: usize,
    holdout_len: usize,
) -> Result<(Vec<Vec<usize>>, Vec<usize>), DemoError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let order = crate::dataset::split::permutation(labels.len(), &mut rng);
    let holdout: Vec<usize> = order[..holdout_len].to_vec();
    let rest = &order[holdout_len..];
    if nodes == 0 || rest.len() < nodes * min_rows {
        return Err(DemoError::Options(format!(
            "{} rows cannot give {nodes} nodes {min_rows} rows each",
            rest.len()
        )));
    }
    let mut shards = vec![Vec::new(); nodes];
    match split {
        ShardSplit::Iid => {
            for (i, &row) in rest.iter().enumerate() {
                shards[i % nodes].push(row);
            }
        }
        ShardSplit::Dirichlet { alpha } => {
            let gamma = Gamma::new(alpha, 1.0).map_err(|_| {
                DemoError::Options(format!("--alpha must be a positive number, not {alpha}"))
            })?;
            let mut by_label: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
            for &row in rest {
                by_label.entry(labels[row] as i64).or_default().push(row);
            }
            for rows in by_label.values() {
                let draws: Vec<f64> = (0..nodes).map(|_| gamma.sample(&mut rng)).collect();
                let total: f64 = draws.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                let mut start = 0;
                let mut cumulative = 0.0;
                for (node, draw) in draws.iter().enumerate() {
                    cumulative += draw / total;
                    let end = if node + 1 == nodes {
                        rows.len()
                    } else {
                        ((cumulative * rows.len() as f64).round() as usize).min(rows.len())
                    };
                    shards[node].extend_from_slice(&rows[start..end.max(start)]);
                    start = end.max(start);
                }
            }
            // Top up small shards from the largest, so every node can train.
            for node in 0..nodes {
                while shards[node].len() < min_rows {
                    let largest = (0..nodes).max_by_key(|&n| shards[n].len()).unwrap_or(node);
                    let row = shards[largest].pop().ok_or_else(|| {
                        DemoError::Options("not enough rows for every node".into())
                    })?;
                    shards[node].push(row);
                }
            }
        }
    }
    Ok((shards, holdout))
}

/// Write rows `rows` of `table` as a CSV file.
fn write_csv(table: &Table, rows: &[usize], path: &Path) -> Result<(), DemoError> {
    let mut out = table.names().join(",");
    out.push('\n');
    for &r in rows {
        let cells: Vec<String> = (0..table.width())
            .map(|c| table.get(r, c).to_string())
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    std::fs::write(path, out).map_err(setup(&format!("writing {}", path.display())))
}

/// Where the researcher's held-out samples are.
pub(super) enum Holdout {
    /// Held-out rows (as written to, and read back from, a CSV file).
    Table(Table),
    /// Held-out images, decoded.
    Images(LoadedImages),
}

/// The nodes' datasets (with their sample counts) and the held-out part.
pub(super) struct DemoData {
    pub(super) datasets: Vec<(NewDataset, usize)>,
    pub(super) holdout: Holdout,
}

impl DemoData {
    /// Image shards and the held-out images.
    fn images(datasets: Vec<(NewDataset, usize)>, holdout: LoadedImages) -> Self {
        DemoData {
            datasets,
            holdout: Holdout::Images(holdout),
        }
    }
}

impl Holdout {
    /// Rows or images held out.
    pub(super) fn len(&self) -> usize {
        match self {
            Holdout::Table(table) => table.rows(),
            Holdout::Images(images) => images.images.len(),
        }
    }
}

/// Shards of a shipped table, one CSV per node, and 20% held out.
pub(super) fn table_shards(
    options: &DemoOptions,
    data_file: &str,
    target: &str,
    tag: &str,
) -> Result<DemoData, DemoError> {
    let table = Table::open(&options.source_dir.join("data").join(data_file))
        .map_err(setup("reading the demo data"))?;
    let target_col = table
        .column(target)
        .map_err(setup("reading the demo data"))?;
    let labels: Vec<f64> = (0..table.rows())
        .map(|r| table.get(r, target_col))
        .collect();
    let (shards, holdout) = deal_rows(&labels, options.nodes, options.split, options.seed, 20)?;
    let holdout_path = options.work_dir.join("holdout.csv");
    write_csv(&table, &holdout, &holdout_path)?;
    let mut datasets = Vec::new();
    for (i, rows) in shards.iter().enumerate() {
        let shard = options.work_dir.join(format!("node-{}.csv", i + 1));
        write_csv(&table, rows, &shard)?;
        datasets.push((
            NewDataset {
                name: format!("{data_file} shard {}", i + 1),
                tags: vec![tag.into()],
                description: format!("{} rows of {data_file}", rows.len()),
                path: shard,
                target: Some(target.into()),
                split_column: None,
                image_columns: None,
            },
            rows.len(),
        ));
    }
    Ok(DemoData {
        datasets,
        holdout: Holdout::Table(
            Table::open(&holdout_path).map_err(setup("reading the held-out rows"))?,
        ),
    })
}

/// Shards of the shipped image folder `data/<name>/train`, one image folder
/// per node (files copied, classes kept), and `data/<name>/test` held out:
/// its patches come from another part of the image, so none overlaps a
/// training patch.
pub(super) fn image_shards(
    options: &DemoOptions,
    name: &str,
    tag: &str,
) -> Result<DemoData, DemoError> {
    let root = options.source_dir.join("data").join(name);
    let train = crate::dataset::scan_folder(&root.join("train"), &Default::default())
        .map_err(setup("reading the demo images"))?;
    let labels: Vec<f64> = train
        .items
        .iter()
        .map(|item| match item.target {
            crate::dataset::ImageTarget::Class(c) => f64::from(c),
            _ => 0.0,
        })
        .collect();
    let shards = deal_all(&labels, options.nodes, options.split, options.seed, 20)?;
    let mut datasets = Vec::new();
    for (i, rows) in shards.iter().enumerate() {
        let folder = options.work_dir.join(format!("node-{}-images", i + 1));
        for &r in rows {
            copy_relative(&root.join("train"), &folder, &train.items[r].path)?;
        }
        datasets.push((
            NewDataset {
                name: format!("{name} shard {}", i + 1),
                tags: vec![tag.into()],
                description: format!("{} image patches of {name}", rows.len()),
                path: folder,
                target: None,
                split_column: None,
                image_columns: None,
            },
            rows.len(),
        ));
    }
    let holdout = read_images(
        &root.join("test"),
        None,
        SandboxConfig::default().memory_bytes(),
    )
    .map_err(setup("reading the held-out images"))?;
    Ok(DemoData::images(datasets, holdout))
}

/// Copy the file `relative` of folder `from` to the same place in `to`.
fn copy_relative(from: &Path, to: &Path, relative: &Path) -> Result<(), DemoError> {
    let target = to.join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(setup("writing a node's images"))?;
    }
    std::fs::copy(from.join(relative), &target).map_err(setup("writing a node's images"))?;
    Ok(())
}

/// The columns of the shipped mask manifests.
fn mask_columns() -> ManifestColumns {
    ManifestColumns {
        image: "image".into(),
        target: ManifestTarget::Mask("mask".into()),
    }
}

/// Shards of the shipped mask manifest `data/<name>/train.csv`: each node
/// gets a folder with its tiles and masks copied and a manifest of them;
/// `data/<name>/test.csv` is held out (tiles of another part of the image).
/// For a label-skewed split a tile's label is whether its mask holds any
/// foreground.
pub(super) fn mask_shards(
    options: &DemoOptions,
    name: &str,
    tag: &str,
) -> Result<DemoData, DemoError> {
    let root = options.source_dir.join("data").join(name);
    let budget = SandboxConfig::default().memory_bytes();
    let train = read_images(&root.join("train.csv"), Some(&mask_columns()), budget)
        .map_err(setup("reading the demo tiles"))?;
    let labels: Vec<f64> = train
        .masks
        .iter()
        .map(|m| f64::from(u8::from(m.iter().any(|&c| c > 0))))
        .collect();
    let shards = deal_all(&labels, options.nodes, options.split, options.seed, 20)?;
    let mut datasets = Vec::new();
    for (i, rows) in shards.iter().enumerate() {
        let folder = options.work_dir.join(format!("node-{}-tiles", i + 1));
        let mut manifest = String::from("image,mask\n");
        for &r in rows {
            let item = &train.set.items[r];
            let crate::dataset::ImageTarget::Mask(mask) = &item.target else {
                continue;
            };
            for relative in [&item.path, mask] {
                copy_relative(&root, &folder, relative)?;
            }
            manifest.push_str(&format!(
                "{},{}\n",
                item.path.to_string_lossy(),
                mask.to_string_lossy()
            ));
        }
        let path = folder.join("tiles.csv");
        std::fs::write(&path, manifest).map_err(setup("writing a node's manifest"))?;
        datasets.push((
            NewDataset {
                name: format!("{name} shard {}", i + 1),
                tags: vec![tag.into()],
                description: format!("{} tiles of {name} with their masks", rows.len()),
                path,
                target: None,
                split_column: None,
                image_columns: Some(mask_columns()),
            },
            rows.len(),
        ));
    }
    let holdout = read_images(&root.join("test.csv"), Some(&mask_columns()), budget)
        .map_err(setup("reading the held-out tiles"))?;
    Ok(DemoData::images(datasets, holdout))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn shards_are_disjoint_seeded_and_cover_the_rows() {
        let labels: Vec<f64> = (0..200).map(|i| (i % 4) as f64).collect();
        for split in [ShardSplit::Iid, ShardSplit::Dirichlet { alpha: 0.3 }] {
            let (shards, holdout) = deal_rows(&labels, 5, split, 7, 5).unwrap();
            let mut all: Vec<usize> = shards.iter().flatten().chain(&holdout).copied().collect();
            all.sort();
            assert_eq!(all, (0..200).collect::<Vec<_>>(), "{split:?}");
            assert_eq!(holdout.len(), 40);
            assert!(shards.iter().all(|s| s.len() >= 5));
            assert_eq!(deal_rows(&labels, 5, split, 7, 5).unwrap().0, shards);
            assert_ne!(deal_rows(&labels, 5, split, 8, 5).unwrap().0, shards);
        }
        let (skewed, _) =
            deal_rows(&labels, 5, ShardSplit::Dirichlet { alpha: 0.1 }, 1, 5).unwrap();
        let label_sets: Vec<BTreeSet<i64>> = skewed
            .iter()
            .map(|s| s.iter().map(|&r| labels[r] as i64).collect())
            .collect();
        assert!(
            label_sets.iter().any(|s| s.len() < 4),
            "alpha 0.1 skews labels"
        );
        assert!(deal_rows(&labels, 5, ShardSplit::Dirichlet { alpha: 0.0 }, 1, 5).is_err());
        assert!(deal_rows(&labels, 100, ShardSplit::Iid, 1, 5).is_err());
    }
}
