//! The deployment files: docker-compose.yml only sets variables the app reads, and the
//! README documents every configuration key.

use codelayer::config::KEYS;

#[test]
fn compose_sets_only_variables_the_app_reads() {
    let text = std::fs::read_to_string("docker-compose.yml").expect("docker-compose.yml");
    let compose: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    let env = compose["services"]["codelayer"]["environment"]
        .as_mapping()
        .expect("codelayer service has an environment map");
    assert!(!env.is_empty());
    for key in env.keys() {
        let key = key.as_str().expect("string key");
        assert!(
            KEYS.iter().any(|(k, _)| *k == key),
            "docker-compose.yml sets {key}, which codelayer does not read"
        );
    }
    assert!(
        env.keys().any(|k| k.as_str() == Some("DATABASE_URL")),
        "compose runs against PostgreSQL"
    );
    let build = &compose["services"]["codelayer"]["build"];
    assert_eq!(build.as_str(), Some("."), "built from the Dockerfile here");
    assert!(std::path::Path::new("Dockerfile").exists());
}

#[test]
fn readme_documents_every_configuration_key() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    for (key, default) in KEYS {
        assert!(readme.contains(key), "README does not mention {key}");
        if let Some(default) = default {
            assert!(
                readme.contains(default),
                "README does not give {key}'s default {default}"
            );
        }
    }
}
