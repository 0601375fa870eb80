//! Language detection from a file's path, and the aliases accepted by `lang:`.

/// File extensions (lower-case, without the dot) and the language they mean.
const EXTENSIONS: &[(&str, &str)] = &[
    ("rs", "rust"),
    ("py", "python"),
    ("pyi", "python"),
    ("pyw", "python"),
    ("c", "c"),
    ("h", "c"),
    ("cc", "cpp"),
    ("cpp", "cpp"),
    ("cxx", "cpp"),
    ("c++", "cpp"),
    ("hh", "cpp"),
    ("hpp", "cpp"),
    ("hxx", "cpp"),
    ("ipp", "cpp"),
    ("go", "go"),
    ("js", "javascript"),
    ("mjs", "javascript"),
    ("cjs", "javascript"),
    ("jsx", "javascript"),
    ("ts", "typescript"),
    ("tsx", "typescript"),
    ("mts", "typescript"),
    ("cts", "typescript"),
    ("java", "java"),
    ("kt", "kotlin"),
    ("kts", "kotlin"),
    ("scala", "scala"),
    ("groovy", "groovy"),
    ("gradle", "groovy"),
    ("cs", "csharp"),
    ("fs", "fsharp"),
    ("swift", "swift"),
    ("m", "objectivec"),
    ("mm", "objectivec"),
    ("rb", "ruby"),
    ("php", "php"),
    ("pl", "perl"),
    ("pm", "perl"),
    ("lua", "lua"),
    ("r", "r"),
    ("dart", "dart"),
    ("ex", "elixir"),
    ("exs", "elixir"),
    ("erl", "erlang"),
    ("hrl", "erlang"),
    ("hs", "haskell"),
    ("ml", "ocaml"),
    ("mli", "ocaml"),
    ("clj", "clojure"),
    ("cljs", "clojure"),
    ("zig", "zig"),
    ("nim", "nim"),
    ("jl", "julia"),
    ("sh", "shell"),
    ("bash", "shell"),
    ("zsh", "shell"),
    ("ksh", "shell"),
    ("fish", "shell"),
    ("ps1", "powershell"),
    ("bat", "batch"),
    ("cmd", "batch"),
    ("md", "markdown"),
    ("markdown", "markdown"),
    ("rst", "restructuredtext"),
    ("adoc", "asciidoc"),
    ("txt", "text"),
    ("yaml", "yaml"),
    ("yml", "yaml"),
    ("toml", "toml"),
    ("json", "json"),
    ("jsonc", "json"),
    ("xml", "xml"),
    ("xsd", "xml"),
    ("svg", "xml"),
    ("html", "html"),
    ("htm", "html"),
    ("css", "css"),
    ("scss", "scss"),
    ("sass", "scss"),
    ("less", "less"),
    ("vue", "vue"),
    ("svelte", "svelte"),
    ("sql", "sql"),
    ("s", "assembly"),
    ("asm", "assembly"),
    ("proto", "protobuf"),
    ("graphql", "graphql"),
    ("gql", "graphql"),
    ("tf", "terraform"),
    ("hcl", "hcl"),
    ("cmake", "cmake"),
    ("mk", "makefile"),
    ("ini", "ini"),
    ("cfg", "ini"),
    ("tex", "tex"),
    ("vim", "vim"),
    ("el", "elisp"),
    ("diff", "diff"),
    ("patch", "diff"),
];

/// Whole file names (lower-case) that say the language without an extension.
const FILE_NAMES: &[(&str, &str)] = &[
    ("makefile", "makefile"),
    ("gnumakefile", "makefile"),
    ("dockerfile", "dockerfile"),
    ("cmakelists.txt", "cmake"),
    ("cargo.lock", "toml"),
    ("gemfile", "ruby"),
    ("rakefile", "ruby"),
    ("jenkinsfile", "groovy"),
    ("vagrantfile", "ruby"),
    (".bashrc", "shell"),
    (".profile", "shell"),
    (".zshrc", "shell"),
];

/// Extra names accepted by `lang:` besides the language names themselves.
const ALIASES: &[(&str, &str)] = &[
    ("rs", "rust"),
    ("py", "python"),
    ("python3", "python"),
    ("c++", "cpp"),
    ("cxx", "cpp"),
    ("cc", "cpp"),
    ("golang", "go"),
    ("js", "javascript"),
    ("node", "javascript"),
    ("ts", "typescript"),
    ("kt", "kotlin"),
    ("c#", "csharp"),
    ("cs", "csharp"),
    ("f#", "fsharp"),
    ("objc", "objectivec"),
    ("objective-c", "objectivec"),
    ("rb", "ruby"),
    ("pl", "perl"),
    ("sh", "shell"),
    ("bash", "shell"),
    ("zsh", "shell"),
    ("md", "markdown"),
    ("yml", "yaml"),
    ("asm", "assembly"),
    ("make", "makefile"),
    ("docker", "dockerfile"),
    ("tf", "terraform"),
    ("ex", "elixir"),
    ("hs", "haskell"),
    ("ps", "powershell"),
    ("rst", "restructuredtext"),
];

/// The language of a file by its name: a lower-case name such as "rust", "" when unknown.
pub fn language_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if let Some((_, lang)) = FILE_NAMES.iter().find(|(n, _)| *n == name) {
        return lang;
    }
    if name.starts_with("dockerfile") {
        return "dockerfile";
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => EXTENSIONS
            .iter()
            .find(|(e, _)| *e == ext)
            .map_or("", |(_, lang)| lang),
        _ => "",
    }
}

/// The language name a `lang:` value means (case-insensitive): `py` → `python`,
/// `python` → `python`; None when unknown.
pub fn language_aliases(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    if let Some((_, lang)) = ALIASES.iter().find(|(a, _)| *a == name) {
        return Some(lang);
    }
    EXTENSIONS
        .iter()
        .chain(FILE_NAMES)
        .map(|(_, lang)| *lang)
        .find(|lang| *lang == name)
}

/// Every language name `lang:` accepts besides the aliases (for "did you mean").
pub fn language_names() -> impl Iterator<Item = &'static str> {
    EXTENSIONS
        .iter()
        .chain(FILE_NAMES)
        .map(|(_, lang)| *lang)
        .chain(ALIASES.iter().map(|(alias, _)| *alias))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_extension_and_name() {
        assert_eq!(language_of("src/main.rs"), "rust");
        assert_eq!(language_of("a/b/tool.PY"), "python");
        assert_eq!(language_of("x.hpp"), "cpp");
        assert_eq!(language_of("Makefile"), "makefile");
        assert_eq!(language_of("deploy/Dockerfile.prod"), "dockerfile");
        assert_eq!(language_of("README"), "");
        assert_eq!(language_of(".gitignore"), "");
        assert_eq!(language_of("boot.S"), "assembly");
    }

    #[test]
    fn aliases_resolve_case_insensitively() {
        assert_eq!(language_aliases("py"), Some("python"));
        assert_eq!(language_aliases("Python"), Some("python"));
        assert_eq!(language_aliases("RS"), Some("rust"));
        assert_eq!(language_aliases("c++"), Some("cpp"));
        assert_eq!(language_aliases("makefile"), Some("makefile"));
        assert_eq!(language_aliases("klingon"), None);
    }
}
