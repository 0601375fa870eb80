//! Tests of building and reading shards over a bare repository made with git2.

mod search;
mod symbols;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use git2::{Oid, Repository, Signature};
use tempfile::TempDir;

use super::{BuildStats, IndexError, Limits, MAX_PATH_BYTES, Shard, build_shard};

const FILE: i32 = 0o100644;
const EXEC: i32 = 0o100755;
const LINK: i32 = 0o120000;
const DIR: i32 = 0o040000;
const COMMIT: i32 = 0o160000;

/// Number of generated `gen/file_NNN.txt` files.
pub(super) const GENERATED: usize = 200;

/// A bare repository with one commit.
pub(super) struct Repo {
    pub dir: TempDir,
    pub commit: Oid,
}

/// A tree described as (name, mode, content or subtree).
pub(super) enum Node {
    Blob(&'static str, i32, Vec<u8>),
    Tree(&'static str, Vec<Node>),
    Submodule(&'static str),
}

fn write_tree(repo: &Repository, nodes: &[Node], sub: Oid) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(None)?;
    for node in nodes {
        match node {
            Node::Blob(name, mode, bytes) => {
                builder.insert(name, repo.blob(bytes)?, *mode)?;
            }
            Node::Tree(name, children) => {
                builder.insert(name, write_tree(repo, children, sub)?, DIR)?;
            }
            Node::Submodule(name) => {
                builder.insert(name, sub, COMMIT)?;
            }
        }
    }
    builder.write()
}

/// Creates a bare repository whose single commit holds `nodes`.
pub(super) fn make_repo(nodes: &[Node]) -> Result<Repo, git2::Error> {
    let dir = TempDir::new().map_err(|e| git2::Error::from_str(&e.to_string()))?;
    let repo = Repository::init_bare(dir.path())?;
    let sig = Signature::now("Test", "test@example.com")?;
    // The submodule's commit lives in the same object database and holds a file, so a walk
    // that followed gitlinks would index "submoduleneedle".
    let mut inner = repo.treebuilder(None)?;
    inner.insert("inside.txt", repo.blob(b"submoduleneedle\n")?, FILE)?;
    let inner = repo.find_tree(inner.write()?)?;
    let sub = repo.commit(None, &sig, &sig, "submodule target", &inner, &[])?;
    let tree = repo.find_tree(write_tree(&repo, nodes, sub)?)?;
    let commit = repo.commit(Some("HEAD"), &sig, &sig, "fixture", &tree, &[])?;
    Ok(Repo { dir, commit })
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The fixture tree: code in several languages, files to skip, symlinks, a submodule.
pub(super) fn fixture_nodes() -> Vec<Node> {
    let mut generated: Vec<Node> = (0..GENERATED)
        .map(|i| {
            let name: &'static str = Box::leak(format!("file_{i:03}.txt").into_boxed_str());
            Node::Blob(name, FILE, text(&format!("common words here\nline {i}\n")))
        })
        .collect();
    generated.push(Node::Blob(
        "rare.txt",
        FILE,
        text("common words here\nthe zebraquokka hides\n"),
    ));
    generated.push(Node::Blob(
        "repeat.txt",
        FILE,
        "repetitive compressible line\n".repeat(10_000).into_bytes(),
    ));
    vec![
        Node::Blob(
            "README.md",
            FILE,
            text("# Demo\nThis project parses things.\n"),
        ),
        Node::Blob(
            "CamelCase.java",
            FILE,
            text("class HttpServerFactory {\n  ParseHttpRequest parser;\n}\n"),
        ),
        Node::Blob(
            "latin1.txt",
            FILE,
            b"caf\xe9 au lait latin1needle\n".to_vec(),
        ),
        Node::Blob(
            "unicode.txt",
            FILE,
            text("Die GRÖSSE und die größe\ncrab 🦀 emoji\nÄRGER\n"),
        ),
        Node::Blob(
            "crlf.txt",
            FILE,
            text("first\r\nsecond crlfneedle\r\nthird\r\n"),
        ),
        Node::Blob("aaaa.txt", FILE, "a".repeat(400_000).into_bytes()),
        Node::Blob("xxxx.txt", FILE, "x".repeat(400_000).into_bytes()),
        Node::Tree(
            "src",
            vec![
                Node::Blob(
                    "main.rs",
                    FILE,
                    text(
                        "fn main() {\n    let größe = 42;\n    println!(\"{}\", parse_http_request(größe));\n}\n\nfn helper_123() {}\n",
                    ),
                ),
                Node::Blob(
                    "lib.rs",
                    FILE,
                    text(
                        "pub fn parseHttpRequest(input: &str) -> Request {\n    todo!()\n}\n// 🦀 crab\n",
                    ),
                ),
                Node::Blob("aaa.rs", FILE, text("widget widget widget\nwidget again\n")),
                Node::Tree(
                    "deep",
                    vec![Node::Tree(
                        "er",
                        vec![Node::Tree(
                            "est",
                            vec![Node::Blob("deep.txt", FILE, text("deepneedle\n"))],
                        )],
                    )],
                ),
            ],
        ),
        Node::Tree(
            "ui",
            vec![Node::Blob(
                "widget_view.rs",
                FILE,
                text("// uses a widget once\n"),
            )],
        ),
        Node::Tree(
            "tools",
            vec![Node::Blob(
                "script.py",
                EXEC,
                text(
                    "def parse_http_request(data):\n    return data\n\nMAX_SIZE = 1024\nvalue_123 = MAX_SIZE\n",
                ),
            )],
        ),
        Node::Tree(
            "data",
            vec![
                Node::Blob("binary.bin", FILE, b"\x00\x01\x02 binaryneedle\n".to_vec()),
                Node::Blob(
                    "big.txt",
                    FILE,
                    "bigneedle line\n".repeat(150_000).into_bytes(),
                ),
            ],
        ),
        Node::Tree(
            "links",
            vec![
                Node::Blob("passwd", LINK, text("/etc/passwd")),
                Node::Blob("secret", LINK, text("../../secret")),
            ],
        ),
        Node::Tree("gen", generated),
        Node::Submodule("vendor"),
    ]
}

/// A built shard and what building it reported; the directories live as long as it.
pub(super) struct Built {
    pub shard: Shard,
    pub stats: BuildStats,
    pub _repo: Repo,
    pub _out: TempDir,
}

/// Builds `nodes` with `limits` into a fresh shard and opens it.
pub(super) fn build(nodes: &[Node], limits: &Limits) -> Result<Built, IndexError> {
    let repo = make_repo(nodes)?;
    let out = TempDir::new()?;
    let shard_dir: PathBuf = out.path().join("shard");
    let stats = build_shard(
        repo.dir.path(),
        repo.commit,
        &shard_dir,
        limits,
        None,
        &|_, _| {},
    )?;
    Ok(Built {
        shard: Shard::open(&shard_dir)?,
        stats,
        _repo: repo,
        _out: out,
    })
}

/// The fixture, built once with default limits and shared by the tests.
pub(super) fn fixture() -> &'static Built {
    static FIXTURE: OnceLock<Built> = OnceLock::new();
    FIXTURE.get_or_init(|| match build(&fixture_nodes(), &Limits::default()) {
        Ok(built) => built,
        Err(e) => panic!("building the fixture shard failed: {e}"),
    })
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn build_counts_what_it_skips() {
    let stats = &fixture().stats;
    // 17 named entries + 202 under gen/, minus binary.bin and big.txt; symlinks count.
    assert_eq!(stats.files, 17 + GENERATED as u64 + 2 - 2, "{stats:?}");
    assert_eq!(stats.skipped_binary, 1);
    assert_eq!(stats.skipped_large, 1);
    assert_eq!(stats.symlinks, 2);
    assert_eq!(stats.submodules, 1);
    assert_eq!(stats.skipped_too_deep, 0);
    assert_eq!(stats.skipped_over_file_limit, 0);
    assert!(stats.bytes > 800_000, "{stats:?}");
}

#[test]
fn shard_holds_an_index_and_a_compressed_content_file() -> Result<(), IndexError> {
    let repo = make_repo(&fixture_nodes())?;
    let out = TempDir::new()?;
    let dir = out.path().join("s");
    let calls = std::sync::Mutex::new(Vec::new());
    let progress = |done, total| {
        if let Ok(mut c) = calls.lock() {
            c.push((done, total));
        }
    };
    let stats = build_shard(
        repo.dir.path(),
        repo.commit,
        &dir,
        &Limits::default(),
        None,
        &progress,
    )?;
    assert_eq!(
        files_in(&dir),
        ["VERSION", "content.bin", "index", "symbols.bin"]
    );
    assert!(crate::index::shard_is_current(&dir));
    let content_len = std::fs::metadata(dir.join("content.bin"))?.len();
    assert!(
        content_len < stats.bytes / 2,
        "{content_len} vs {}",
        stats.bytes
    );
    let calls = calls.into_inner().unwrap_or_default();
    assert_eq!(calls.first().map(|c| c.0), Some(0));
    let last = calls.last().copied().unwrap_or_default();
    assert_eq!(last.0, last.1, "progress ends at total: {calls:?}");
    // An existing output directory is refused rather than mixed with.
    let again = build_shard(
        repo.dir.path(),
        repo.commit,
        &dir,
        &Limits::default(),
        None,
        &|_, _| {},
    );
    assert!(matches!(again, Err(IndexError::Io(_))));
    Ok(())
}

#[test]
fn list_and_read_files() -> Result<(), IndexError> {
    let shard = &fixture().shard;
    let files = shard.list_files()?;
    let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(paths.contains(&"src/main.rs") && paths.contains(&"links/passwd"));
    assert!(!paths.contains(&"data/binary.bin") && !paths.contains(&"data/big.txt"));
    assert!(!paths.iter().any(|p| p.starts_with("vendor")));
    let script = files.iter().find(|f| f.0 == "tools/script.py");
    assert_eq!(script.map(|f| f.1.as_str()), Some("python"));
    assert_eq!(
        shard.read_file("latin1.txt")?,
        Some(b"caf\xe9 au lait latin1needle\n".to_vec())
    );
    assert_eq!(
        shard.read_file("links/passwd")?,
        Some(b"/etc/passwd".to_vec())
    );
    let repeat = shard.read_file("gen/repeat.txt")?.unwrap_or_default();
    assert_eq!(
        repeat,
        "repetitive compressible line\n".repeat(10_000).into_bytes()
    );
    assert_eq!(shard.read_file("nope.txt")?, None);
    assert_eq!(shard.read_file("src")?, None);
    Ok(())
}

#[test]
fn limits_on_depth_and_file_count() -> Result<(), IndexError> {
    let shallow = Limits {
        max_tree_depth: 2,
        ..Limits::default()
    };
    let built = build(&fixture_nodes(), &shallow)?;
    assert_eq!(
        built.stats.skipped_too_deep, 1,
        "src/deep/er is not descended"
    );
    assert_eq!(built.shard.read_file("src/deep/er/est/deep.txt")?, None);
    assert!(built.shard.read_file("src/main.rs")?.is_some());

    let few = Limits {
        max_files: 5,
        ..Limits::default()
    };
    let built = build(&fixture_nodes(), &few)?;
    assert_eq!(built.stats.files, 5);
    assert!(built.stats.skipped_over_file_limit > 200);
    assert_eq!(built.shard.list_files()?.len(), 5);
    Ok(())
}

/// Ten levels of ten identical subtrees, a file on every level: a few kilobytes of git,
/// more than 10^10 files.
fn tree_bomb(repo: &Repository) -> Result<Oid, git2::Error> {
    let blob = repo.blob(b"bomb\n")?;
    let mut leaf = repo.treebuilder(None)?;
    leaf.insert("f.txt", blob, FILE)?;
    let mut tree = leaf.write()?;
    for _ in 0..10 {
        let mut level = repo.treebuilder(None)?;
        level.insert("f.txt", blob, FILE)?;
        for i in 0..10 {
            level.insert(format!("d{i}"), tree, DIR)?;
        }
        tree = level.write()?;
    }
    Ok(tree)
}

#[test]
fn a_tree_bomb_stops_at_the_entry_limit() -> Result<(), IndexError> {
    let dir = TempDir::new()?;
    let repo = Repository::init_bare(dir.path())?;
    let sig = Signature::now("Test", "test@example.com")?;
    let tree = repo.find_tree(tree_bomb(&repo)?)?;
    let commit = repo.commit(Some("HEAD"), &sig, &sig, "bomb", &tree, &[])?;
    let limits = Limits {
        max_tree_entries: 50_000,
        max_files: 1_000,
        ..Limits::default()
    };
    let out = TempDir::new()?;
    let started = std::time::Instant::now();
    let stats = build_shard(
        dir.path(),
        commit,
        &out.path().join("s"),
        &limits,
        None,
        &|_, _| {},
    )?;
    assert_eq!(stats.stopped_at_entries, Some(50_000), "{stats:?}");
    assert_eq!(stats.files, 1_000);
    assert!(stats.skipped_over_file_limit > 0, "{stats:?}");
    // Bounded work: the walk stopped, it did not try 10^10 entries.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let shard = Shard::open(&out.path().join("s"))?;
    assert_eq!(shard.search(&search::words(&["bomb"]))?.total_files, 1_000);
    Ok(())
}

#[test]
fn the_byte_budget_and_path_length_are_limits() -> Result<(), IndexError> {
    let long = "x".repeat(MAX_PATH_BYTES + 1);
    let long: &'static str = Box::leak(long.into_boxed_str());
    let nodes = vec![
        Node::Blob("a.txt", FILE, vec![b'a'; 1000]),
        Node::Blob("b.txt", FILE, vec![b'b'; 1000]),
        Node::Blob("c.txt", FILE, vec![b'c'; 1000]),
        Node::Blob(long, FILE, text("never")),
    ];
    let limits = Limits {
        max_total_bytes: 2_500,
        ..Limits::default()
    };
    let built = build(&nodes, &limits)?;
    assert_eq!(built.stats.files, 2, "{:?}", built.stats);
    assert_eq!(built.stats.skipped_over_byte_limit, 1);
    assert_eq!(built.stats.skipped_long_path, 1);
    assert!(built.stats.bytes <= 2_500);
    Ok(())
}

#[test]
fn empty_tree_builds_an_empty_shard() -> Result<(), IndexError> {
    let built = build(&[], &Limits::default())?;
    assert_eq!(built.stats.files, 0);
    assert!(built.shard.list_files()?.is_empty());
    let result = built.shard.search(&search::words(&["anything"]))?;
    assert_eq!(result.total_files, 0);
    Ok(())
}

#[test]
fn shard_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Shard>();
}
