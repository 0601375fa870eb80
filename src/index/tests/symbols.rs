//! Symbols: per language, definitions with the right kind, lines and container; the
//! outline; `sym:` search; definitions ranked above uses; hostile files bounded.

use std::time::{Duration, Instant};

use super::{FILE, Node, build, make_repo};
use crate::index::{
    IndexError, Limits, Pattern, Shard, ShardQuery, Symbol, SymbolKind, SymbolQuery, build_shard,
    language_of,
};

/// (name, kind, name line, first line, last line, container)
type Expected = (
    &'static str,
    &'static str,
    u32,
    u32,
    u32,
    Option<&'static str>,
);

fn outline_of(name: &'static str, source: &str) -> Result<Vec<Symbol>, IndexError> {
    let built = build(
        &[Node::Blob(name, FILE, source.as_bytes().to_vec())],
        &Limits::default(),
    )?;
    assert_eq!(
        built.stats.files_without_symbols, 0,
        "{name}: {:?}",
        built.stats
    );
    assert_eq!(built.stats.symbols, built.shard.num_symbols() as u64);
    Ok(built.shard.outline(name))
}

fn check(name: &'static str, source: &str, expected: &[Expected]) -> Result<(), IndexError> {
    let got: Vec<Expected> = outline_of(name, source)?
        .into_iter()
        .map(|s| {
            let name: &'static str = Box::leak(s.name.into_boxed_str());
            let container: Option<&'static str> =
                s.container.map(|c| &*Box::leak(c.into_boxed_str()));
            (name, s.kind, s.line, s.start_line, s.end_line, container)
        })
        .collect();
    assert_eq!(got, expected, "{name} ({})", language_of(name));
    Ok(())
}

#[test]
fn rust_definitions() -> Result<(), IndexError> {
    check(
        "lib.rs",
        "pub struct Config {\n    port: u16,\n}\n\nenum Mode { A, B }\n\npub trait Store {\n    fn get(&self);\n}\n\nimpl Config {\n    pub fn new() -> Config {\n        Config { port: 0 }\n    }\n}\n\nfn main() {}\n\nmod inner {\n    fn helper() {}\n}\n",
        &[
            ("Config", "struct", 1, 1, 3, None),
            ("Mode", "enum", 5, 5, 5, None),
            ("Store", "trait", 7, 7, 9, None),
            // A signature without a body: our pattern, not in tree-sitter-rust's tags query.
            ("get", "method", 8, 8, 8, Some("Store")),
            ("new", "method", 12, 12, 14, Some("Config")),
            ("main", "function", 17, 17, 17, None),
            ("inner", "module", 19, 19, 21, None),
            // The query calls every item of a block a method; inside a module it is not.
            ("helper", "function", 20, 20, 20, Some("inner")),
        ],
    )
}

#[test]
fn python_definitions() -> Result<(), IndexError> {
    check(
        "app.py",
        "MAX_SIZE = 10\n\nclass Server:\n    def start(self):\n        pass\n\n    def stop(self):\n        pass\n\ndef main():\n    Server().start()\n",
        &[
            ("MAX_SIZE", "constant", 1, 1, 1, None),
            ("Server", "class", 3, 3, 8, None),
            ("start", "function", 4, 4, 5, Some("Server")),
            ("stop", "function", 7, 7, 8, Some("Server")),
            ("main", "function", 10, 10, 11, None),
        ],
    )
}

#[test]
fn go_definitions() -> Result<(), IndexError> {
    check(
        "server.go",
        "package main\n\ntype Server struct {\n\tport int\n}\n\nfunc (s *Server) Start() error {\n\treturn nil\n}\n\nfunc main() {\n}\n",
        &[
            ("Server", "type", 3, 3, 5, None),
            ("Start", "method", 7, 7, 9, None),
            ("main", "function", 11, 11, 12, None),
        ],
    )
}

#[test]
fn javascript_definitions() -> Result<(), IndexError> {
    check(
        "app.js",
        "class Widget {\n  render() {\n    return 1;\n  }\n}\n\nfunction mount(el) {\n  return new Widget();\n}\n\nconst handler = () => 1;\n",
        &[
            ("Widget", "class", 1, 1, 5, None),
            ("render", "method", 2, 2, 4, Some("Widget")),
            ("mount", "function", 7, 7, 9, None),
            ("handler", "function", 11, 11, 11, None),
        ],
    )
}

#[test]
fn typescript_and_tsx_definitions() -> Result<(), IndexError> {
    check(
        "api.ts",
        "export interface Client {\n  fetch(url: string): Promise<string>;\n}\n\nexport class HttpClient {\n  get(url: string) {\n    return url;\n  }\n}\n\nexport function connect(): void {}\n",
        &[
            ("Client", "interface", 1, 1, 3, None),
            ("fetch", "method", 2, 2, 2, Some("Client")),
            ("HttpClient", "class", 5, 5, 9, None),
            ("get", "method", 6, 6, 8, Some("HttpClient")),
            ("connect", "function", 11, 11, 11, None),
        ],
    )?;
    check(
        "view.tsx",
        "export function Button(props: Props) {\n  return <button>{props.label}</button>;\n}\n",
        &[("Button", "function", 1, 1, 3, None)],
    )
}

#[test]
fn java_definitions() -> Result<(), IndexError> {
    check(
        "Main.java",
        "interface Greeter {\n  void greet();\n}\n\nclass Main implements Greeter {\n  public void greet() {\n  }\n}\n",
        &[
            ("Greeter", "interface", 1, 1, 3, None),
            ("greet", "method", 2, 2, 2, Some("Greeter")),
            ("Main", "class", 5, 5, 8, None),
            ("greet", "method", 6, 6, 7, Some("Main")),
        ],
    )
}

#[test]
fn c_and_cpp_definitions() -> Result<(), IndexError> {
    check(
        "list.c",
        "struct node {\n  int value;\n};\n\ntypedef int count_t;\n\nenum color { RED, GREEN };\n\nint list_length(struct node *n) {\n  return 0;\n}\n\nint list_sum(struct node *n);\n\nchar *list_name(struct node *n) {\n  return 0;\n}\n",
        &[
            ("node", "struct", 1, 1, 3, None),
            ("count_t", "type", 5, 5, 5, None),
            ("color", "enum", 7, 7, 7, None),
            // A definition spans its body (our pattern); a prototype is its declarator.
            ("list_length", "function", 9, 9, 11, None),
            ("list_sum", "function", 13, 13, 13, None),
            ("list_name", "function", 15, 15, 17, None),
        ],
    )?;
    check(
        "shape.cpp",
        "class Shape {\n public:\n  int area();\n};\n\nint Shape::area() {\n  return 0;\n}\n",
        &[
            ("Shape", "class", 1, 1, 4, None),
            ("area", "function", 3, 3, 3, Some("Shape")),
            ("area", "method", 6, 6, 6, None),
        ],
    )
}

#[test]
fn unknown_languages_have_no_symbols_and_are_not_counted() -> Result<(), IndexError> {
    let built = build(
        &[Node::Blob("notes.txt", FILE, b"fn main() {}\n".to_vec())],
        &Limits::default(),
    )?;
    assert_eq!(built.stats.files_without_symbols, 0);
    assert!(built.shard.outline("notes.txt").is_empty());
    // The same text as Rust has one.
    let built = build(
        &[Node::Blob("main.rs", FILE, b"fn main() {}\n".to_vec())],
        &Limits::default(),
    )?;
    assert_eq!(built.shard.outline("main.rs").len(), 1);
    Ok(())
}

fn literal(word: &str) -> Pattern {
    Pattern {
        regex: regex::escape(word),
        case_sensitive: false,
        literal: true,
    }
}

/// A definition file that would lose on words alone: its name is longer, and the users
/// mention the identifier many times (BM25 and the path both favour them).
fn ranking_nodes() -> Vec<Node> {
    let user =
        "use crate::parse_config;\nfn a() { parse_config(); parse_config(); parse_config(); }\n";
    vec![
        Node::Blob(
            "parse_config.rs",
            FILE,
            user.repeat(3).into_bytes(),
        ),
        Node::Blob("b.rs", FILE, user.repeat(4).into_bytes()),
        Node::Tree(
            "src",
            vec![Node::Tree(
                "settings",
                vec![Node::Blob(
                    "loader_of_everything.rs",
                    FILE,
                    format!(
                        "// {}\nstruct Loader;\nimpl Loader {{\n    fn parse_config(&self) {{}}\n}}\n\npub fn parse_config() -> u8 {{\n    0\n}}\n",
                        "filler words ".repeat(200)
                    )
                    .into_bytes(),
                )],
            )],
        ),
    ]
}

#[test]
fn the_defining_file_ranks_first_and_its_line_is_marked() -> Result<(), IndexError> {
    let built = build(&ranking_nodes(), &Limits::default())?;
    let query = ShardQuery {
        must: vec![literal("parse_config")],
        max_matches_per_file: 1,
        ..ShardQuery::default()
    };
    let result = built.shard.search(&query)?;
    let paths: Vec<&str> = result.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths[0], "src/settings/loader_of_everything.rs",
        "{paths:?}"
    );
    // The one line shown is the top-level definition, not the first (nested) one.
    let top = &result.files[0].matches;
    assert_eq!(top.len(), 1);
    assert!(top[0].definition);
    assert_eq!(top[0].line, 7);
    // Users are not marked.
    assert!(result.files[1].matches.iter().all(|m| !m.definition));
    assert!(!result.files[1].matches.is_empty());
    // A search that stops after one matching file has looked at the definition first.
    let prepared = crate::index::PreparedQuery::new(&query)?;
    let early = built
        .shard
        .search_until(&prepared, &crate::index::Stop::never().after_matches(1))?;
    assert_eq!(early.files.len(), 1);
    assert_eq!(early.files[0].path, "src/settings/loader_of_everything.rs");
    Ok(())
}

#[test]
fn sym_queries_find_definitions_only() -> Result<(), IndexError> {
    let built = build(&ranking_nodes(), &Limits::default())?;
    let sym = |pattern: Pattern, must: Vec<Pattern>| ShardQuery {
        must,
        symbols: vec![pattern],
        max_matches_per_file: 10,
        ..ShardQuery::default()
    };
    // Substring, case-insensitive: only the defining file, with both definitions marked.
    let result = built.shard.search(&sym(literal("PARSE_conf"), vec![]))?;
    assert_eq!(result.total_files, 1);
    let lines: Vec<(u32, bool)> = result.files[0]
        .matches
        .iter()
        .map(|m| (m.line, m.definition))
        .collect();
    assert_eq!(lines, [(4, true), (7, true)]);
    assert_eq!(result.files[0].matches[1].ranges, [(7, 19)]);
    // A regex, anchored.
    let re = Pattern {
        regex: "^Load".into(),
        case_sensitive: true,
        literal: false,
    };
    assert_eq!(built.shard.search(&sym(re, vec![]))?.total_files, 1);
    // Combined with a word the file lacks: nothing.
    let none = built
        .shard
        .search(&sym(literal("parse_config"), vec![literal("zebra")]))?;
    assert_eq!(none.total_files, 0);
    // Excluded with -sym: the users remain.
    let query = ShardQuery {
        must: vec![literal("parse_config")],
        symbols_not: vec![literal("parse_config")],
        ..ShardQuery::default()
    };
    assert_eq!(built.shard.search(&query)?.total_files, 2);
    // A name nobody defines.
    assert_eq!(
        built
            .shard
            .search(&sym(literal("nowhere"), vec![]))?
            .total_files,
        0
    );
    Ok(())
}

#[test]
fn find_symbols_ranks_exact_and_top_level_first() -> Result<(), IndexError> {
    let built = build(&ranking_nodes(), &Limits::default())?;
    let (found, total) = built.shard.find_symbols(&SymbolQuery {
        pattern: literal("parse_config"),
        kind: None,
        languages: vec![],
        limit: 10,
    })?;
    assert_eq!(total, 2);
    assert_eq!((found[0].line, found[0].kind), (7, "function"));
    assert_eq!((found[1].line, found[1].kind), (4, "method"));
    assert_eq!(found[1].container.as_deref(), Some("Loader"));
    let (methods, _) = built.shard.find_symbols(&SymbolQuery {
        pattern: literal("parse"),
        kind: SymbolKind::parse("METHOD"),
        languages: vec![],
        limit: 10,
    })?;
    assert_eq!(methods.len(), 1);
    let defs = built.shard.definitions_named("parse_config", 5);
    assert_eq!(defs.len(), 2);
    assert!(built.shard.definitions_named("Parse_Config", 5).is_empty());
    Ok(())
}

/// Exact-name lookups search by the first 8 folded bytes: names that share them, or are a
/// prefix of another, must still be told apart, with and without case.
#[test]
fn exact_name_lookups_tell_names_with_a_shared_prefix_apart() -> Result<(), IndexError> {
    let source = "def pa():\n    pass\ndef parse_co():\n    pass\ndef parse_config():\n    pass\n\
                  def parse_configs():\n    pass\ndef PARSE_CONFIG():\n    pass\ndef parse_conf():\n    pass\n";
    let built = build(
        &[Node::Blob("names.py", FILE, source.as_bytes().to_vec())],
        &Limits::default(),
    )?;
    let lines = |name: &str| -> Vec<u32> {
        built
            .shard
            .definitions_named(name, 10)
            .iter()
            .map(|s| s.line)
            .collect()
    };
    assert_eq!(lines("parse_config"), [5]);
    assert_eq!(lines("PARSE_CONFIG"), [9]);
    assert_eq!(lines("parse_configs"), [7]);
    assert_eq!(lines("parse_co"), [3]);
    assert_eq!(lines("pa"), [1]);
    assert!(lines("parse_c").is_empty());
    assert!(lines("parse_configss").is_empty());
    let folded = built
        .shard
        .identifier_defs(&[("Parse_Config".to_owned(), false)]);
    assert_eq!(
        folded.values().map(Vec::len).sum::<usize>(),
        2,
        "{folded:?}"
    );
    Ok(())
}

/// `sym:` literals are found by one scan over all names: a match never spans two names, and
/// several matches in one name count it once.
#[test]
fn a_symbol_name_scan_stays_inside_each_name() -> Result<(), IndexError> {
    let built = build(
        &[Node::Blob(
            "pair.rs",
            FILE,
            b"fn tail_ab() {}\nfn cd_head() {}\nfn abab() {}\n".to_vec(),
        )],
        &Limits::default(),
    )?;
    let find = |text: &str| -> Result<Vec<String>, IndexError> {
        let (found, total) = built.shard.find_symbols(&SymbolQuery {
            pattern: literal(text),
            kind: None,
            languages: vec![],
            limit: 10,
        })?;
        assert_eq!(total, found.len());
        Ok(found.into_iter().map(|s| s.name).collect())
    };
    assert_eq!(find("AIL_A")?, ["tail_ab"]);
    assert_eq!(find("D_HEAD")?, ["cd_head"]);
    assert!(find("abcd")?.is_empty(), "across tail_ab and cd_head");
    assert_eq!(find("ab")?, ["abab", "tail_ab"]);
    Ok(())
}

#[test]
fn hostile_files_are_skipped_or_bounded() -> Result<(), IndexError> {
    // 900 KB on one line: over the symbol size limit, indexed without symbols.
    let minified = format!("var a=1;{}", "function f(){return [1,2,3]};".repeat(32_000));
    assert!(minified.len() > 900_000);
    // Deeply nested brackets, small enough to be parsed: bounded by the time budget.
    let nested = format!(
        "fn deep() {{ let x = {}0{}; }}\n",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let nodes = vec![
        Node::Blob("min.js", FILE, minified.into_bytes()),
        Node::Blob("nested.rs", FILE, nested.into_bytes()),
        Node::Blob("ok.rs", FILE, b"fn fine() {}\n".to_vec()),
    ];
    let limits = Limits {
        symbol_budget: Duration::from_millis(50),
        ..Limits::default()
    };
    let started = Instant::now();
    let built = build(&nodes, &limits)?;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let stats = &built.stats;
    assert_eq!(stats.files, 3);
    assert_eq!(stats.symbols_skipped_large, 1, "{stats:?}");
    assert!(built.shard.outline("min.js").is_empty());
    // The nested file either finished within its budget or was cut and counted.
    assert_eq!(
        stats.files_without_symbols,
        1 + u64::from(built.shard.outline("nested.rs").is_empty()),
        "{stats:?}"
    );
    assert_eq!(
        stats.symbols_timed_out,
        u64::from(built.shard.outline("nested.rs").is_empty())
    );
    // The other files keep their symbols and their content is searchable.
    assert_eq!(built.shard.outline("ok.rs").len(), 1);
    Ok(())
}

#[test]
fn a_parse_over_budget_is_cut_and_counted() -> Result<(), IndexError> {
    // A zero budget cuts every parse at its first progress check.
    let big: String = (0..10_000)
        .map(|i| format!("fn f{i}() {{ let v = vec![{i}; 3]; }}\n"))
        .collect();
    let limits = Limits {
        symbol_budget: Duration::ZERO,
        ..Limits::default()
    };
    let built = build(
        &[Node::Blob("big.rs", FILE, big.clone().into_bytes())],
        &limits,
    )?;
    assert_eq!(built.stats.symbols_timed_out, 1, "{:?}", built.stats);
    assert_eq!(built.stats.files_without_symbols, 1);
    assert!(built.shard.outline("big.rs").is_empty());
    // With time enough (a debug build parses slowly) the same file has all its symbols.
    let limits = Limits {
        symbol_budget: Duration::from_secs(60),
        ..Limits::default()
    };
    let built = build(&[Node::Blob("big.rs", FILE, big.into_bytes())], &limits)?;
    assert_eq!(built.stats.symbols, 10_000);
    Ok(())
}

/// A re-index parses only the files that changed: the others keep the replaced shard's
/// symbols (same path, same blob), and a damaged previous file only costs the reuse.
#[test]
fn a_rebuild_reuses_the_symbols_of_unchanged_files() -> Result<(), IndexError> {
    let first = build(
        &[
            Node::Blob("kept.rs", FILE, b"pub fn kept_one() {}\n".to_vec()),
            Node::Blob("moved.rs", FILE, b"pub fn before_change() {}\n".to_vec()),
        ],
        &Limits::default(),
    )?;
    let previous = first._out.path().join("shard");
    let changed = make_repo(&[
        Node::Blob("kept.rs", FILE, b"pub fn kept_one() {}\n".to_vec()),
        Node::Blob("moved.rs", FILE, b"pub fn after_change() {}\n".to_vec()),
    ])?;
    let rebuild = |out: &std::path::Path, previous: Option<&std::path::Path>| {
        build_shard(
            changed.dir.path(),
            changed.commit,
            out,
            &Limits::default(),
            previous,
            &|_, _| {},
        )
    };
    let scratch = tempfile::TempDir::new()?;
    let out = scratch.path().join("reused");
    let stats = rebuild(&out, Some(&previous))?;
    assert_eq!(stats.symbols_reused, 1, "{stats:?}");
    let shard = Shard::open(&out)?;
    let names =
        |path: &str| -> Vec<String> { shard.outline(path).into_iter().map(|s| s.name).collect() };
    assert_eq!(names("kept.rs"), ["kept_one"]);
    assert_eq!(names("moved.rs"), ["after_change"]);

    // A damaged symbol file of the old shard (not zstd at all; zstd around a cut entry):
    // nothing reused, everything extracted again.
    let damaged = [
        b"CLSYM02\n\xff\xff".to_vec(),
        zstd::encode_all(&b"CLSYM03\n\xff\xff"[..], 3)?,
    ];
    for (n, bytes) in damaged.iter().enumerate() {
        std::fs::write(previous.join("symbols.bin"), bytes)?;
        let out = scratch.path().join(format!("parsed-{n}"));
        let stats = rebuild(&out, Some(&previous))?;
        assert_eq!((stats.symbols_reused, stats.symbols), (0, 2), "{stats:?}");
        assert_eq!(
            Shard::open(&out)?.outline("kept.rs")[0].name,
            "kept_one",
            "parsed again"
        );
    }
    Ok(())
}

/// Build-time and size overhead of symbols on real code: up to 400 source files from
/// `CODELAYER_MEASURE_DIR` (default: this crate), built with and without extraction.
/// `cargo test --lib measure_symbol_overhead -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_symbol_overhead() -> Result<(), IndexError> {
    let root = std::env::var("CODELAYER_MEASURE_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)?.filter_map(Result::ok) {
            let path = entry.path();
            let name = path.to_string_lossy().into_owned();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if path.is_dir() && !hidden && entry.file_name() != "target" {
                dirs.push(path);
            } else if !language_of(&name).is_empty() && files.len() < 400 {
                files.push((name, std::fs::read(&path)?));
            }
        }
    }
    let nodes: Vec<Node> = files
        .iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let ext = name.rsplit('.').next().unwrap_or("txt");
            let name: &'static str = Box::leak(format!("f{i:04}.{ext}").into_boxed_str());
            Node::Blob(name, FILE, bytes.clone())
        })
        .collect();
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    let without = Limits {
        max_symbol_file_bytes: 0,
        ..Limits::default()
    };
    for (label, limits) in [
        ("without symbols", &without),
        ("with symbols", &Limits::default()),
    ] {
        let mut best = u128::MAX;
        let mut last = None;
        for _ in 0..3 {
            let started = Instant::now();
            let built = build(&nodes, limits)?;
            best = best.min(started.elapsed().as_millis());
            last = Some(built);
        }
        let Some(built) = last else { continue };
        let dir = built._out.path().join("shard");
        println!(
            "{label}: {} files, {bytes} bytes, best build of 3 {best} ms, shard {} bytes, symbols.bin {} bytes, {} symbols, {} files without",
            built.stats.files,
            walk_size(&dir),
            std::fs::metadata(dir.join("symbols.bin")).map_or(0, |m| m.len()),
            built.stats.symbols,
            built.stats.files_without_symbols
        );
    }
    Ok(())
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk_size(&p)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}
