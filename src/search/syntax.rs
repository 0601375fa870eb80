//! The query language, described once: the parser takes its filter names from here, the
//! `/search/help` page renders these rows, and the MCP tool descriptions are generated from
//! them, so what an assistant is told is what the parser accepts.

use super::query::MAX_QUERY_BYTES;

/// A filter key the parser knows: its name and the aliases it also accepts.
pub struct FilterKey {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
}

/// Every filter, by its canonical name (`key:value`; `key:"a value"` for spaces).
pub const FILTERS: &[FilterKey] = &[
    FilterKey {
        name: "repo",
        aliases: &["r"],
    },
    FilterKey {
        name: "workspace",
        aliases: &["ws"],
    },
    FilterKey {
        name: "path",
        aliases: &["file", "f"],
    },
    FilterKey {
        name: "lang",
        aliases: &["language"],
    },
    FilterKey {
        name: "sym",
        aliases: &["symbol"],
    },
    FilterKey {
        name: "case",
        aliases: &[],
    },
];

/// The canonical filter name of `key` (any case), if the parser accepts it.
pub fn filter_name(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    FILTERS
        .iter()
        .find(|f| f.name == key || f.aliases.contains(&key.as_str()))
        .map(|f| f.name)
}

/// Filter names other search tools use, and what this language says instead.
pub const FOREIGN_FILTERS: &[(&str, &str)] = &[
    ("repository", "repo:"),
    ("org", "workspace:"),
    ("project", "workspace:"),
    ("filename", "file:"),
    ("dir", "path:"),
    ("directory", "path:"),
    ("ext", "path:*."),
    ("extension", "path:*."),
    ("content", ""),
];

/// Words that are operators elsewhere but not here: all words must match already, `-`
/// negates, and `/a|b/` matches either. Written in capitals they are refused, with the
/// corrected query; quoted (`"OR"`) they are searched for.
pub const NOT_OPERATORS: &[&str] = &["OR", "AND", "NOT"];

/// One row of the syntax: what to write and what it finds.
pub struct Form {
    pub write: &'static [&'static str],
    pub finds: &'static str,
}

/// The whole language, one row per construct.
pub const FORMS: &[Form] = &[
    Form {
        write: &["parse config"],
        finds: "files containing every word, in any case (words are literal text: a.b( finds \"a.b(\")",
    },
    Form {
        write: &["\"fn main()\""],
        finds: "the exact phrase, spaces included; \\\" is a quote inside it",
    },
    Form {
        write: &["/fn\\s+\\w+_test/"],
        finds: "a regular expression (Rust regex syntax, no look-around); it ends at a / followed by a space or the end, \\/ is a slash inside it",
    },
    Form {
        write: &["repo:api", "r:api"],
        finds: "only repositories whose slug is api or whose full name contains it",
    },
    Form {
        write: &["workspace:acme", "ws:acme"],
        finds: "only the workspace with that slug",
    },
    Form {
        write: &["path:src/", "file:*.rs", "f:\"my dir\""],
        finds: "paths containing the text, or matching the glob (* within a folder, ** across folders, ?); a glob without / matches any one path segment",
    },
    Form {
        write: &["lang:python", "language:rs"],
        finds: "files of a language, by name or extension (py, rs, ts, go, java, c++ …)",
    },
    Form {
        write: &["sym:parse_config", "symbol:parse_config"],
        finds: "files that define a symbol (function, method, class, struct, enum, interface, trait, type, module, constant) whose name contains the text — Rust, Python, Go, JavaScript, TypeScript, Java, C and C++; the defining lines are shown. Combine it with words and filters: sym:Config lang:go -path:test",
    },
    Form {
        write: &["sym:/^new_\\w+$/"],
        finds: "files defining a symbol whose name matches the regular expression",
    },
    Form {
        write: &["case:yes"],
        finds: "match letter case exactly (default: case-insensitive)",
    },
    Form {
        write: &["-test", "-path:vendor/", "-/TODO|FIXME/"],
        finds: "- before a word, phrase, regex or filter excludes it",
    },
    Form {
        write: &["/get|fetch/"],
        finds: "either word: there is no OR, AND, NOT or grouping with parentheses (written in capitals they are refused; \"OR\" searches for the word)",
    },
];

/// Example queries with what they do.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "parse_config lang:rust",
        "Rust files that contain parse_config",
    ),
    (
        "\"fn main\" -path:tests/",
        "the phrase, outside tests/ folders",
    ),
    (
        "/impl\\s+Display\\s+for/ repo:api",
        "a regex, in repositories named like api",
    ),
    (
        "TODO path:src/**/*.py case:yes",
        "TODO in capitals, in Python files under src/",
    ),
];

/// Fixed facts about queries, for both the page and the tools.
pub fn notes() -> String {
    format!(
        "A query is at most {} KiB. Results come grouped by file, best first: files that define a searched identifier (top-level definitions before nested ones), then path matches, then whole-identifier matches, then relevance, then shorter paths. Lines that are definitions are marked def. In the file view, the outline lists the file's definitions, and a name defined in the repository links to its definition (to a sym: search when there are several).",
        MAX_QUERY_BYTES / 1024
    )
}

/// The language as plain text, for tool descriptions: one line per construct, then examples.
pub fn plain_text() -> String {
    let mut out = String::from("Query language (exactly this; nothing else is an operator):\n");
    for form in FORMS {
        let write: Vec<String> = form.write.iter().map(|w| format!("`{w}`")).collect();
        out.push_str(&format!("- {}: {}\n", write.join(", "), form.finds));
    }
    let aliases: Vec<String> = FILTERS
        .iter()
        .map(|f| {
            let mut names = vec![format!("{}:", f.name)];
            names.extend(f.aliases.iter().map(|a| format!("{a}:")));
            names.join(" = ")
        })
        .collect();
    out.push_str(&format!(
        "Filters are exactly: {}. Any other key:value is searched as text, except names close to a filter, which are refused with the correction.\n",
        aliases.join(", ")
    ));
    out.push_str("Examples:\n");
    for (query, what) in EXAMPLES {
        out.push_str(&format!("- `{query}`: {what}\n"));
    }
    out.push_str(&notes());
    out
}

#[cfg(test)]
mod tests {
    use super::super::query::parse;
    use super::*;

    #[test]
    fn every_documented_form_and_example_parses() {
        for form in FORMS {
            for write in form.write {
                let q = if write.starts_with('-') || write.contains(':') {
                    format!("x {write}")
                } else {
                    (*write).to_owned()
                };
                assert!(parse(&q).is_ok(), "{q}: {:?}", parse(&q));
            }
        }
        for (example, _) in EXAMPLES {
            assert!(parse(example).is_ok(), "{example}");
        }
    }

    #[test]
    fn every_filter_and_alias_is_accepted() {
        for f in FILTERS {
            for key in std::iter::once(&f.name).chain(f.aliases) {
                let value = if f.name == "case" { "yes" } else { "rs" };
                assert!(
                    parse(&format!("x {key}:{value}")).is_ok(),
                    "{key}: is documented"
                );
            }
        }
        assert!(plain_text().contains("lang: = language:"));
    }
}
