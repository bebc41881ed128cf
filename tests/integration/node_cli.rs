//! `fedwasm node init | dataset | plan` as an operator runs them.

use std::path::Path;
use std::process::Command;

use fedwasm::digest::Sha256Digest;

use crate::support::{data, example_plan, fedwasm_bin, hostile_plan};

fn node(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(fedwasm_bin());
    cmd.arg("node");
    for a in args {
        cmd.arg(a.replace("{dir}", dir.to_str().unwrap()));
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn operator_registers_datasets_and_approves_plans_and_state_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hospital-a");
    let (ok, out, err) = node(&dir, &["init", "--dir", "{dir}", "--id", "hospital-a"]);
    assert!(ok && out.contains("node hospital-a created"), "{out}{err}");
    let (ok, _, err) = node(&dir, &["init", "--dir", "{dir}"]);
    assert!(!ok && err.contains("already exists"), "{err}");

    let csv = data("breast_cancer.csv");
    let csv = csv.to_str().unwrap();
    let add = |tags: &str, target: &str| {
        node(
            &dir,
            &[
                "dataset", "add", "--dir", "{dir}", "--path", csv, "--tags", tags, "--name", "bc",
                "--target", target,
            ],
        )
    };
    let (ok, out, err) = add("#breast-cancer,#site-a", "diagnosis");
    assert!(ok && out.contains("569 rows × 31 columns"), "{out}{err}");
    let (ok, _, err) = add("#breast-cancer", "diagnosis");
    assert!(!ok && err.contains("conflict"), "{err}");
    let (ok, _, err) = add("#other", "outcome");
    assert!(!ok && err.contains("no column `outcome`"), "{err}");

    // NumPy arrays register too; their columns are x0, x1, …
    let npy = tmp.path().join("scores.npy");
    ndarray_npy::WriteNpyExt::write_npy(
        &ndarray::arr2(&[[0.5f32, 1.0, 0.0], [1.5, 2.0, 1.0]]),
        std::fs::File::create(&npy).unwrap(),
    )
    .unwrap();
    let (ok, out, err) = node(
        &dir,
        &[
            "dataset",
            "add",
            "--dir",
            "{dir}",
            "--path",
            npy.to_str().unwrap(),
            "--tags",
            "#scores",
            "--name",
            "scores",
            "--target",
            "x2",
        ],
    );
    assert!(ok && out.contains("2 rows × 3 columns"), "{out}{err}");
    let (ok, out, _) = node(&dir, &["dataset", "list", "--dir", "{dir}"]);
    assert!(
        ok && out.contains("#scores") && out.contains("target x2"),
        "{out}"
    );

    let plan = example_plan("logistic-regression");
    let digest = Sha256Digest::of_file(&plan).unwrap();
    let (ok, out, err) = node(
        &dir,
        &["plan", "approve", "--dir", "{dir}", plan.to_str().unwrap()],
    );
    assert!(
        ok && out.contains(&digest.to_hex()) && out.contains("logistic-regression"),
        "{out}{err}"
    );
    assert!(!err.contains("without 128-bit SIMD"), "{err}");
    let other = Sha256Digest::of(b"another plan").to_hex();
    assert!(node(&dir, &["plan", "reject", "--dir", "{dir}", &other]).0);
    let (ok, _, err) = node(&dir, &["plan", "approve", "--dir", "{dir}", "not-a-hash"]);
    assert!(
        !ok && err.contains("neither a component file nor a SHA-256"),
        "{err}"
    );

    // Every command is a new process: what it lists was persisted.
    let (ok, out, _) = node(&dir, &["dataset", "list", "--dir", "{dir}"]);
    assert!(
        ok && out.contains("#breast-cancer,#site-a") && out.contains("target diagnosis"),
        "{out}"
    );
    let (ok, out, _) = node(&dir, &["plan", "list", "--dir", "{dir}"]);
    assert!(ok && out.contains("approval required: true"), "{out}");
    assert!(
        out.contains(&format!("{digest}  Approved  logistic-regression")),
        "{out}"
    );
    assert!(out.contains(&format!("{other}  Rejected")), "{out}");
    let (_, list, _) = node(&dir, &["dataset", "list", "--dir", "{dir}"]);
    let dataset_id = list
        .lines()
        .find(|l| l.contains("#breast-cancer"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(node(&dir, &["dataset", "remove", "--dir", "{dir}", &dataset_id]).0);
    let (ok, _, err) = node(&dir, &["dataset", "remove", "--dir", "{dir}", &dataset_id]);
    assert!(!ok && err.contains("no dataset"), "{err}");
}

/// Image datasets as an operator registers them: a folder of class
/// sub-folders, or a CSV manifest labelled by class, by several labels or by
/// masks; a bad one is refused naming the file, and the node's other
/// datasets stay.
#[test]
fn operator_registers_image_folders_and_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imaging");
    let (ok, _, err) = node(&dir, &["init", "--dir", "{dir}", "--id", "imaging"]);
    assert!(ok, "{err}");
    let scans = tmp.path().join("scans");
    for (file, shade) in [
        ("normal/1.png", 10u8),
        ("normal/2.png", 20),
        ("effusion/1.png", 200),
    ] {
        let path = scans.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::ImageBuffer::from_pixel(4, 4, image::Luma([shade]))
            .save(path)
            .unwrap();
    }
    let add = |path: &Path, tags: &str, extra: &[&str]| {
        let mut args = vec![
            "dataset",
            "add",
            "--dir",
            "{dir}",
            "--path",
            path.to_str().unwrap(),
            "--kind",
            "images",
            "--tags",
            tags,
            "--name",
            "scans",
        ];
        args.extend(extra);
        node(&dir, &args)
    };
    let (ok, out, err) = add(&scans, "#folder", &[]);
    assert!(
        ok && out.contains("3 images of [1, 4, 4], class effusion, normal"),
        "{out}{err}"
    );
    let folder_id = out.split_whitespace().nth(1).unwrap().to_string();
    let check = || node(&dir, &["dataset", "check", "--dir", "{dir}", &folder_id]);
    let (ok, out, err) = check();
    assert!(
        ok && out.contains("unchanged since registration"),
        "{out}{err}"
    );
    image::ImageBuffer::from_pixel(4, 4, image::Luma([11u8]))
        .save(scans.join("normal/1.png"))
        .unwrap();
    let (ok, out, _) = check();
    assert!(!ok && out.contains("changed since registration"), "{out}");
    // A manifest beside the class folders (the folder registered above
    // would now refuse these top-level files).
    image::ImageBuffer::from_pixel(4, 4, image::Luma([1u8]))
        .save(scans.join("mask.png"))
        .unwrap();
    let manifest = scans.join("manifest.csv");
    std::fs::write(
        &manifest,
        "file,grade,effusion,nodule,mask\nnormal/1.png,2,0,1,mask.png\neffusion/1.png,10,1,0,mask.png\n",
    )
    .unwrap();
    let (ok, out, err) = add(
        &manifest,
        "#grades",
        &["--image-column", "file", "--target", "grade"],
    );
    assert!(
        ok && out.contains("2 images of [1, 4, 4], class 2, 10"),
        "{out}{err}"
    );
    let (ok, out, err) = add(
        &manifest,
        "#findings",
        &["--image-column", "file", "--target", "effusion,nodule"],
    );
    assert!(
        ok && out.contains("multi-label effusion, nodule"),
        "{out}{err}"
    );
    let (ok, out, err) = add(
        &manifest,
        "#masks",
        &["--image-column", "file", "--mask-column", "mask"],
    );
    assert!(ok && out.contains("mask 1"), "{out}{err}");
    let (ok, out, _) = node(&dir, &["dataset", "list", "--dir", "{dir}"]);
    assert!(ok && out.lines().count() == 4, "{out}");

    std::fs::write(&manifest, "file,grade\nnormal/missing.png,1\n").unwrap();
    let (ok, _, err) = add(
        &manifest,
        "#broken",
        &["--image-column", "file", "--target", "grade"],
    );
    assert!(
        !ok && err.contains("normal/missing.png: unreadable"),
        "{err}"
    );
    let (ok, _, err) = add(&manifest, "#unlabelled", &["--image-column", "file"]);
    assert!(!ok && err.contains("needs --target"), "{err}");
    let (ok, out, _) = node(&dir, &["dataset", "list", "--dir", "{dir}"]);
    assert!(ok && out.lines().count() == 4, "nothing was lost: {out}");
}

#[test]
fn approving_a_plan_compiled_without_simd_warns_the_operator() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hospital-a");
    assert!(node(&dir, &["init", "--dir", "{dir}", "--id", "hospital-a"]).0);
    // A plan written without the SDK, whose code holds no 128-bit vector.
    let plan = hostile_plan("hostile-scalar");
    let (ok, out, err) = node(
        &dir,
        &["plan", "approve", "--dir", "{dir}", plan.to_str().unwrap()],
    );
    assert!(ok && out.contains("hostile-scalar"), "{out}{err}");
    assert!(
        err.contains("warning: this plan was compiled without 128-bit SIMD")
            && err.contains("fedwasm plan build"),
        "{err}"
    );
}
